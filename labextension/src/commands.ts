/**
 * The DeepAnalyze commands, registered by id in one place.
 *
 * The palette, the notebook toolbar and context menu (declared in
 * `schema/plugin.json`) and the sidebar's buttons all run these same commands.
 */

import type { JupyterFrontEnd } from '@jupyterlab/application';
import {
  type ICommandPalette,
  InputDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import type { IDocumentManager } from '@jupyterlab/docmanager';
import type * as nbformat from '@jupyterlab/nbformat';
import { type INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { LabIcon } from '@jupyterlab/ui-components';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import type { AssistantModel } from './assistant';
import type { Labels } from './labels';
import { editModelSettings } from './modelSettings';
import { type LabNotebooks, notebookTarget } from './notebooks';
import { lastRunIn, removeRunCells } from './runCells';
import type { RunRecordStore } from './session';

export const CommandIds = {
  open: 'deepanalyze:open',
  analyzeDataframe: 'deepanalyze:analyze-dataframe',
  generateReport: 'deepanalyze:generate-report',
  removeLastRun: 'deepanalyze:remove-last-run',
  modelSettings: 'deepanalyze:model-settings'
} as const;

export interface ICommandsOptions {
  app: JupyterFrontEnd;
  model: AssistantModel;
  tracker: INotebookTracker;
  notebooks: LabNotebooks;
  docManager: IDocumentManager;
  store: RunRecordStore;
  labels: Labels;
  icon: LabIcon;
  /** Id of the sidebar widget. */
  panelId: string;
  palette: ICommandPalette | null;
}

function timestamp(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `-${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`
  );
}

export function registerCommands(options: ICommandsOptions): void {
  const {
    app,
    model,
    tracker,
    notebooks,
    docManager,
    store,
    labels,
    icon,
    panelId
  } = options;
  const { commands, shell } = app;

  const openPanel = () => shell.activateById(panelId);

  commands.addCommand(CommandIds.open, {
    label: labels.openAssistant,
    caption: labels.openAssistantCaption,
    icon,
    execute: openPanel
  });

  commands.addCommand(CommandIds.analyzeDataframe, {
    label: args =>
      args.name
        ? labels.analyzeName(String(args.name))
        : labels.analyzeDataframeCommand,
    caption: labels.analyzeDataframeCaption,
    isEnabled: () => !model.busy && tracker.currentWidget !== null,
    execute: async (args: ReadonlyPartialJSONObject) => {
      let name = typeof args.name === 'string' ? args.name : '';
      if (!name) {
        await model.variables.refresh();
        const names = model.variables.items.map(v => v.name);
        if (names.length === 0) {
          await showErrorMessage(
            labels.noDataframesTitle,
            model.variables.error ?? labels.noDataframesInKernel
          );
          return;
        }
        const choice = await InputDialog.getItem({
          title: labels.analyzeDataframeTitle,
          label: labels.dataframe,
          items: names
        });
        if (!choice.button.accept || !choice.value) {
          return;
        }
        name = choice.value;
      }
      openPanel();
      await model.send(labels.analyzeDataframeQuestion(name), {
        variables: [name]
      });
    }
  });

  commands.addCommand(CommandIds.modelSettings, {
    label: labels.modelSettingsCommand,
    caption: labels.modelSettings,
    icon,
    isEnabled: () => model.userModels,
    execute: async () => {
      const saved = await editModelSettings(model.client, labels);
      if (saved !== null) {
        await model.reloadModels(saved || undefined);
      }
    }
  });

  commands.addCommand(CommandIds.generateReport, {
    label: args =>
      args.isLauncher ? labels.launcherReport : labels.generateReportCommand,
    icon,
    caption: labels.generateReportCaption,
    isEnabled: () => !model.busy,
    execute: async (args: ReadonlyPartialJSONObject) => {
      let question = typeof args.question === 'string' ? args.question : '';
      if (!question) {
        const answer = await InputDialog.getText({
          title: labels.generateReportTitle,
          label: labels.reportQuestion,
          placeholder: labels.reportQuestionPlaceholder
        });
        if (!answer.button.accept || !answer.value?.trim()) {
          return;
        }
        question = answer.value;
      }
      const active = tracker.currentWidget;
      const directory = active ? PathExt.dirname(active.context.path) : '';
      const services = docManager.services;
      await services.kernelspecs.ready;
      const kernelName =
        active?.sessionContext.session?.kernel?.name ??
        services.kernelspecs.specs?.default ??
        'python3';
      const spec = services.kernelspecs.specs?.kernelspecs[kernelName];
      const path = PathExt.join(
        directory,
        `deepanalyze-report-${timestamp(new Date())}.ipynb`
      );
      const content: nbformat.INotebookContent = {
        nbformat: 4,
        nbformat_minor: 5,
        metadata: {
          kernelspec: {
            name: kernelName,
            display_name: spec?.display_name ?? kernelName
          }
        },
        cells: []
      };
      try {
        await services.contents.save(path, {
          type: 'notebook',
          format: 'json',
          content
        });
      } catch (error) {
        await showErrorMessage(labels.cannotCreateReport, error as Error);
        return;
      }
      const widget = docManager.open(path, 'Notebook', { name: kernelName });
      if (!(widget instanceof NotebookPanel)) {
        return;
      }
      openPanel();
      await widget.sessionContext.ready;
      await model.send(question, {
        notebook: notebooks.of(widget),
        placement: 'end-of-notebook'
      });
      shell.activateById(widget.id);
    }
  });

  commands.addCommand(CommandIds.removeLastRun, {
    label: labels.removeLastRunCommand,
    caption: labels.removeLastRunCaption,
    isEnabled: () => {
      const panel = tracker.currentWidget;
      return (
        panel !== null &&
        lastRunIn(notebookTarget(panel), store.last?.runId ?? null) !== null
      );
    },
    execute: () => {
      const panel = tracker.currentWidget;
      if (!panel) {
        return;
      }
      const target = notebookTarget(panel);
      const runId = lastRunIn(target, store.last?.runId ?? null);
      if (runId) {
        removeRunCells(target, runId);
      }
    }
  });

  // Enabled states follow the run and the active notebook. The model changes with
  // every streamed token, so only a change of `busy` is announced.
  let busy = model.busy;
  model.stateChanged.connect(() => {
    if (model.busy !== busy) {
      busy = model.busy;
      commands.notifyCommandChanged();
    }
  });
  tracker.currentChanged.connect(() => commands.notifyCommandChanged());

  const palette = options.palette;
  if (palette) {
    const category = labels.deepAnalyze;
    for (const command of Object.values(CommandIds)) {
      palette.addItem({ command, category });
    }
  }
}
