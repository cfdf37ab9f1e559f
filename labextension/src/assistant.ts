/**
 * The assistant's state: what the sidebar shows and what its buttons and the commands do.
 *
 * Owns the model list and the model picked in the sidebar, and puts the other rooms
 * together: the settings (`settings.ts`), the current notebook kernel's dataframes
 * (`variables.ts`) and the current run (`runController.ts`). Views listen to one
 * `stateChanged`.
 *
 * Must not render (`panel.tsx` does) or reach JupyterLab's notebooks except through
 * `INotebookHost` (`notebooks.ts`). Errors are kept as readable lines, never thrown at
 * a view.
 */

import { VDomModel } from '@jupyterlab/ui-components';

import { type ApprovalMode, DeepAnalyzeClient, type IModelInfo } from './api';
import type { Labels } from './labels';
import type { INotebookHost } from './notebooks';
import { type ISendOptions, RunController } from './runController';
import type { RunRecordStore } from './session';
import type { AssistantSettings } from './settings';
import { KernelVariables } from './variables';

export interface IAssistantOptions {
  client: DeepAnalyzeClient;
  notebooks: INotebookHost;
  settings: AssistantSettings;
  store: RunRecordStore;
  labels: Labels;
}

export class AssistantModel extends VDomModel {
  constructor(options: IAssistantOptions) {
    super();
    this.client = options.client;
    this.settings = options.settings;
    this._labels = options.labels;
    this.variables = new KernelVariables(
      options.client,
      options.notebooks,
      options.labels
    );
    this.runs = new RunController({
      client: options.client,
      notebooks: options.notebooks,
      store: options.store,
      labels: options.labels,
      runSettings: () => ({
        model: this.selectedModel,
        approval: this.settings.approval,
        placement: this.settings.cellPlacement
      }),
      listedVariables: kernelId => this.variables.namesFor(kernelId)
    });
    const changed = () => this.stateChanged.emit();
    this.settings.changed.connect(changed);
    this.variables.changed.connect(changed);
    this.runs.changed.connect(changed);
    this.runs.runEnded.connect(() => this.variables.scheduleRefresh());
  }

  readonly client: DeepAnalyzeClient;
  readonly settings: AssistantSettings;
  /** The dataframes of the current notebook's kernel. */
  readonly variables: KernelVariables;
  /** The current run. */
  readonly runs: RunController;

  /** True while a run is being started or is in progress. */
  get busy(): boolean {
    return this.runs.busy;
  }

  get approval(): ApprovalMode {
    return this.settings.approval;
  }

  /** The user's choice in the sidebar: saved as the `approval` setting. */
  set approval(mode: ApprovalMode) {
    this.settings.setApproval(mode).catch(reason => {
      console.error('DeepAnalyze: cannot save the approval mode', reason);
    });
  }

  get models(): readonly IModelInfo[] {
    return this._models;
  }

  /** Whether the server lets users add their own model (Model settings). */
  get userModels(): boolean {
    return this._userModels;
  }

  /** Lists the models again and, when given, picks `spec` (a model just saved). */
  async reloadModels(pick?: string): Promise<void> {
    await this.loadModels();
    if (pick) {
      this.selectedModel = pick;
    }
  }

  get modelsError(): string | null {
    return this._modelsError;
  }

  /**
   * The model new runs use: the one picked in the sidebar, else the default of the
   * settings, else the server's default, each only if the server lists it. Before the
   * list arrives (or when it cannot), the settings' default or nothing (the server's).
   */
  get selectedModel(): string {
    const defaultModel = this.settings.defaultModel;
    const candidates = [
      this._pickedModel,
      defaultModel,
      this._serverDefaultModel
    ];
    const listed = candidates.find(
      spec => spec && this._models.some(m => m.spec === spec)
    );
    return listed ?? defaultModel;
  }

  set selectedModel(spec: string) {
    this._pickedModel = spec;
    this.stateChanged.emit();
  }

  async loadModels(): Promise<void> {
    try {
      const list = await this.client.listModels();
      this._models = list.models;
      this._serverDefaultModel = list.default;
      this._userModels = list.user_models ?? false;
      this._modelsError = null;
    } catch (error) {
      this._models = [];
      this._modelsError = this._labels.cannotListModels(
        this._labels.failure(error)
      );
    }
    this.stateChanged.emit();
  }

  /** Starts a run; see `RunController.send`. */
  send(question: string, options?: ISendOptions): Promise<string | null> {
    return this.runs.send(question, options);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.runs.dispose();
    this.variables.dispose();
    this.settings.dispose();
    super.dispose();
  }

  private readonly _labels: Labels;
  private _models: IModelInfo[] = [];
  private _modelsError: string | null = null;
  private _pickedModel = '';
  private _userModels = false;
  private _serverDefaultModel = '';
}
