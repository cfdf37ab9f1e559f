/**
 * The JupyterLab plugins of jupyter-deepanalyze.
 *
 * `jupyter-deepanalyze:plugin` puts the DeepAnalyze sidebar, its commands and the live
 * materializer together; `jupyter-deepanalyze:renderer` renders the `%analyze` magic's
 * output. Each declares the tokens it needs; everything else lives in the modules they
 * wire up.
 */

import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { ILauncher } from '@jupyterlab/launcher';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { DeepAnalyzeClient } from './api';
import { AssistantModel } from './assistant';
import { CommandIds, registerCommands } from './commands';
import { DEEPANALYZE_SVG, deepAnalyzeIcon } from './icon';
import { labelsFor } from './labels';
import { LabNotebooks } from './notebooks';
import { AssistantPanel, PANEL_ID } from './panel';
import { runRendererFactory } from './renderer';
import { RunRecordStore } from './session';
import { AssistantSettings } from './settings';

const PLUGIN_ID = 'jupyter-deepanalyze:plugin';

/** Translation domain: the Python package's name, as JupyterLab language packs expect. */
const TRANSLATION_DOMAIN = 'jupyter_deepanalyze';

const assistantPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'The DeepAnalyze sidebar, its commands and the live materializer of runs into notebooks.',
  autoStart: true,
  requires: [
    INotebookTracker,
    IDocumentManager,
    IRenderMimeRegistry,
    ISettingRegistry
  ],
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    ITranslator,
    IEditorLanguageRegistry,
    ILauncher
  ],
  activate: async (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    rendermime: IRenderMimeRegistry,
    settingRegistry: ISettingRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    translator: ITranslator | null,
    languages: IEditorLanguageRegistry | null,
    launcher: ILauncher | null
  ): Promise<void> => {
    const labels = labelsFor(
      (translator ?? nullTranslator).load(TRANSLATION_DOMAIN)
    );
    const client = new DeepAnalyzeClient(app.serviceManager.serverSettings);
    const store = new RunRecordStore(
      window.localStorage,
      app.serviceManager.serverSettings.baseUrl
    );
    // The settings' defaults are the schema's: they are read once loaded.
    const settings = new AssistantSettings(
      await settingRegistry.load(PLUGIN_ID)
    );
    const notebooks = new LabNotebooks(tracker, docManager);
    const model = new AssistantModel({
      client,
      notebooks,
      settings,
      store,
      labels
    });

    const panel = new AssistantPanel(model, app.commands, labels, {
      markdown: rendermime,
      languages
    });
    panel.title.icon = deepAnalyzeIcon;
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'deepanalyze');

    registerCommands({
      app,
      model,
      tracker,
      notebooks,
      docManager,
      store,
      labels,
      icon: deepAnalyzeIcon,
      panelId: PANEL_ID,
      palette
    });

    // A launcher card: a new notebook with a DeepAnalyze report, asked for by question.
    // The Notebook section draws its cards' icons from an image URL (as for kernels).
    launcher?.add({
      command: CommandIds.generateReport,
      args: { isLauncher: true },
      category: 'Notebook',
      rank: 50,
      kernelIconUrl: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(DEEPANALYZE_SVG)}`
    });

    void model.loadModels();
    void app.restored.then(() => model.runs.restore());
  }
};

const rendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-deepanalyze:renderer',
  description:
    "Renders the %analyze magic's output (application/vnd.deepanalyze.run+json), with Insert as cells.",
  autoStart: true,
  requires: [IRenderMimeRegistry, INotebookTracker],
  optional: [ITranslator, IEditorLanguageRegistry],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    tracker: INotebookTracker,
    translator: ITranslator | null,
    languages: IEditorLanguageRegistry | null
  ): void => {
    const labels = labelsFor(
      (translator ?? nullTranslator).load(TRANSLATION_DOMAIN)
    );
    // Registered on the application's registry before documents are restored, so every
    // notebook's registry (a clone made when it opens) knows the MIME type.
    rendermime.addFactory(runRendererFactory({ tracker, labels, languages }));
  }
};

export default [assistantPlugin, rendererPlugin];
