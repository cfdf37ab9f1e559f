/**
 * The assistant's state: what the sidebar shows and what its buttons and the commands do.
 *
 * Owns the model list and the model picked in the sidebar, and puts the other rooms
 * together: the settings (`settings.ts`), the current notebook kernel's dataframes
 * (`variables.ts`), the current run (`runController.ts`) and each notebook's
 * conversation (`conversations.ts`), read back from the server for the notebook the
 * user works in. Views listen to one `stateChanged`.
 *
 * Must not render (`panel.tsx` does) or reach JupyterLab's notebooks except through
 * `INotebookHost` (`notebooks.ts`). Errors are kept as readable lines, never thrown at
 * a view.
 */

import { VDomModel } from '@jupyterlab/ui-components';

import { type ApprovalMode, DeepAnalyzeClient, type IModelInfo } from './api';
import { Conversations } from './conversations';
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
    this.notebooks = options.notebooks;
    this._labels = options.labels;
    this.conversations = new Conversations(options.client, options.labels);
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
      conversations: this.conversations,
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
    this.conversations.changed.connect(changed);
    this.runs.runEnded.connect(() => this.variables.scheduleRefresh());
    // The conversation of the notebook the user works in is read back from the server.
    const load = () => {
      const current = this.notebooks.current;
      if (current) {
        void this.conversations.load(current);
      }
      this.stateChanged.emit();
    };
    this._loadThread = load;
    this.notebooks.currentChanged.connect(load);
    void this.notebooks.restored.then(load);
  }

  readonly client: DeepAnalyzeClient;
  readonly settings: AssistantSettings;
  /** The dataframes of the current notebook's kernel. */
  readonly variables: KernelVariables;
  /** The current run. */
  readonly runs: RunController;
  /** Each notebook's conversation: its runs, which a new question follows up. */
  readonly conversations: Conversations;
  readonly notebooks: INotebookHost;

  /**
   * The notebook whose conversation the sidebar shows: the one of the run in progress,
   * else the one the user works in, else the one of the last run.
   */
  get threadPath(): string | null {
    const session = this.runs.session;
    if (session && !session.finished) {
      return session.notebookPath;
    }
    return this.notebooks.current?.path ?? session?.notebookPath ?? null;
  }

  /** "New conversation": the next question in the shown notebook starts afresh. */
  newConversation(): void {
    const path = this.threadPath;
    if (path !== null && !this.busy) {
      this.conversations.startNew(path);
    }
  }

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
    this.notebooks.currentChanged.disconnect(this._loadThread);
    this.runs.dispose();
    this.conversations.dispose();
    this.variables.dispose();
    this.settings.dispose();
    super.dispose();
  }

  private readonly _labels: Labels;
  private readonly _loadThread: () => void;
  private _models: IModelInfo[] = [];
  private _modelsError: string | null = null;
  private _pickedModel = '';
  private _userModels = false;
  private _serverDefaultModel = '';
}
