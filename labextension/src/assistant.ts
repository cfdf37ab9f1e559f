/**
 * The assistant's state: what the sidebar shows and what its buttons and the commands do.
 *
 * Owns the model list and selection, the approval mode and cell placement (from the
 * settings), the active notebook kernel's dataframes, the current run (one at a time)
 * and the binding between that run and the notebook it writes into: the notebook that
 * was active when the run started, found again by path after a reload or a reopen.
 *
 * Must not render: `panel.tsx` does. Errors are kept as readable lines, never thrown at
 * a view.
 */

import type { IDocumentManager } from '@jupyterlab/docmanager';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { VDomModel } from '@jupyterlab/ui-components';

import {
  type ApprovalMode,
  DeepAnalyzeClient,
  DeepAnalyzeRequestError,
  type IModelInfo,
  type IVariableInfo
} from './api';
import type { INotebookTarget } from './materializer';
import { type IRunRecord, RunRecordStore, RunSession } from './session';

/** Where a run's cells go in its notebook. */
export type CellPlacement = 'below-active-cell' | 'end-of-notebook';

/** The settings of `schema/plugin.json`. */
export interface IAssistantSettings {
  defaultModel: string;
  approval: ApprovalMode;
  cellPlacement: CellPlacement;
}

export const DEFAULT_SETTINGS: IAssistantSettings = {
  defaultModel: '',
  approval: 'auto',
  cellPlacement: 'below-active-cell'
};

export interface ISendOptions {
  /** Names of kernel variables the run is about. */
  variables?: string[];
  /** The notebook to run in; the active one by default. */
  notebook?: NotebookPanel;
  placement?: CellPlacement;
}

export interface IAssistantOptions {
  client: DeepAnalyzeClient;
  tracker: INotebookTracker;
  docManager: IDocumentManager;
  store: RunRecordStore;
  trans: TranslationBundle;
}

/** The shared notebook model of a notebook panel, which the materializer edits. */
export function notebookTarget(panel: NotebookPanel): INotebookTarget {
  return panel.context.model.sharedModel;
}

/** How long after a cell execution the dataframe list is refreshed. */
const VARIABLES_REFRESH_DELAY_MS = 400;

export class AssistantModel extends VDomModel {
  constructor(options: IAssistantOptions) {
    super();
    this.client = options.client;
    this.tracker = options.tracker;
    this._docManager = options.docManager;
    this._store = options.store;
    this._trans = options.trans;

    this.tracker.currentChanged.connect(this._onCurrentNotebookChanged, this);
    this.tracker.widgetAdded.connect(this._onNotebookOpened, this);
    NotebookActions.executed.connect(this._onCellExecuted, this);
    this._onCurrentNotebookChanged();
  }

  readonly client: DeepAnalyzeClient;
  readonly tracker: INotebookTracker;

  // ---- settings ---------------------------------------------------------------------

  /** Applies the user's settings (at start and whenever they change). */
  configure(settings: IAssistantSettings): void {
    this._settings = { ...settings };
    this._approval = settings.approval;
    this.stateChanged.emit();
  }

  get approval(): ApprovalMode {
    return this._approval;
  }

  set approval(mode: ApprovalMode) {
    this._approval = mode;
    this.stateChanged.emit();
  }

  // ---- models -----------------------------------------------------------------------

  get models(): readonly IModelInfo[] {
    return this._models;
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
    const candidates = [
      this._pickedModel,
      this._settings.defaultModel,
      this._serverDefaultModel
    ];
    const listed = candidates.find(
      spec => spec && this._models.some(m => m.spec === spec)
    );
    return listed ?? this._settings.defaultModel;
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
      this._modelsError = null;
    } catch (error) {
      this._models = [];
      this._modelsError = this._trans.__(
        'Cannot list models: %1',
        this._describe(error)
      );
    }
    this.stateChanged.emit();
  }

  // ---- dataframes of the active notebook's kernel -----------------------------------

  get variables(): readonly IVariableInfo[] {
    return this._variables;
  }

  get variablesError(): string | null {
    return this._variablesError;
  }

  /** Id of the kernel the dataframe list comes from, or null without one. */
  get variablesKernelId(): string | null {
    return this._variablesKernelId;
  }

  async refreshVariables(): Promise<void> {
    const kernelId = this._kernelIdOf(this.tracker.currentWidget);
    const request = ++this._variablesRequest;
    if (kernelId === null) {
      this._variables = [];
      this._variablesError = null;
      this._variablesKernelId = null;
      this.stateChanged.emit();
      return;
    }
    try {
      const variables = await this.client.listVariables(kernelId);
      if (request !== this._variablesRequest) {
        return; // A newer refresh (another notebook, another kernel) is under way.
      }
      this._variables = variables;
      this._variablesError = null;
    } catch (error) {
      if (request !== this._variablesRequest) {
        return;
      }
      this._variables = [];
      this._variablesError = this._trans.__(
        'Cannot list dataframes: %1',
        this._describe(error)
      );
    }
    this._variablesKernelId = kernelId;
    this.stateChanged.emit();
  }

  // ---- the current run --------------------------------------------------------------

  /** The run shown in the sidebar: running, or the last one finished here. */
  get session(): RunSession | null {
    return this._session;
  }

  /** True while a run is being started or is in progress. */
  get busy(): boolean {
    return (
      this._starting || (this._session !== null && !this._session.finished)
    );
  }

  /** The last error to show (a request that failed), or null. */
  get error(): string | null {
    return this._error;
  }

  /**
   * Starts a run in a notebook (the active one by default) and materializes it there.
   * Resolves with the run id, or null when it could not start (see `error`).
   */
  async send(
    question: string,
    options: ISendOptions = {}
  ): Promise<string | null> {
    question = question.trim();
    if (!question || this.busy) {
      return null;
    }
    const panel = options.notebook ?? this.tracker.currentWidget;
    if (!panel) {
      this._fail(this._trans.__('Open a notebook to analyze data in it.'));
      return null;
    }
    this._starting = true;
    this._error = null;
    this.stateChanged.emit();
    try {
      await panel.context.ready;
      await panel.sessionContext.ready;
      const kernelId = this._kernelIdOf(panel);
      const placement = options.placement ?? this._settings.cellPlacement;
      // The anchor is taken now, when the user presses Send: switching tabs or
      // moving the cursor later does not move the run.
      const anchorCellId =
        placement === 'below-active-cell'
          ? (panel.content.activeCell?.model.id ?? null)
          : null;
      const reply = await this.client.startRun({
        question,
        notebook_path: panel.context.path,
        ...(kernelId ? { kernel_id: kernelId } : {}),
        ...(options.variables?.length ? { variables: options.variables } : {}),
        ...(this.selectedModel ? { model: this.selectedModel } : {}),
        approval: this._approval
      });
      const record: IRunRecord = {
        runId: reply.run_id,
        notebookPath: panel.context.path,
        anchorCellId,
        startedAt: Date.now()
      };
      const session = this._adopt(record);
      this._bind(session, panel);
      session.follow();
      return reply.run_id;
    } catch (error) {
      this._fail(this._describe(error));
      return null;
    } finally {
      this._starting = false;
      this.stateChanged.emit();
    }
  }

  /** Stops the current run: the model stream stops and the kernel is interrupted. */
  async stop(): Promise<void> {
    const session = this._session;
    if (!session || session.finished) {
      return;
    }
    try {
      await session.cancel();
    } catch (error) {
      this._fail(this._describe(error));
    }
  }

  /** Answers the current run's approval for `cellId`. */
  async decide(cellId: string, action: 'run' | 'skip'): Promise<void> {
    const session = this._session;
    if (!session) {
      return;
    }
    try {
      await session.decide(cellId, action);
    } catch (error) {
      this._fail(this._describe(error));
    }
  }

  /** Resumes the run that was in progress when the page was (re)loaded, if any. */
  async restore(): Promise<void> {
    const record = this._store.active;
    if (!record || this._session) {
      return;
    }
    const session = this._adopt(record);
    try {
      await session.resume();
    } catch (error) {
      session.dispose();
      this._session = null;
      if (error instanceof DeepAnalyzeRequestError && error.status === 404) {
        // The server restarted and forgot the run: nothing to resume.
        this._store.active = null;
        this.stateChanged.emit();
      } else {
        // The record stays (a later reload may succeed); the sidebar is free for new runs.
        this._fail(
          this._trans.__(
            'Cannot resume the last run: %1',
            this._describe(error)
          )
        );
      }
      return;
    }
    // Bound even when the run finished meanwhile: the events that arrived while the
    // page reloaded still have to become cells.
    await this.tracker.restored;
    const panel =
      this._findNotebook(record.notebookPath) ??
      this._docManager.openOrReveal(record.notebookPath);
    if (panel instanceof NotebookPanel) {
      this._bind(session, panel);
    }
  }

  /** Activates and shows a cell of the current run in its notebook. */
  async revealCell(cellId: string): Promise<void> {
    const session = this._session;
    const panel = session
      ? this._findNotebook(session.notebookPath)
      : undefined;
    if (!panel) {
      return;
    }
    const index = panel.content.widgets.findIndex(
      cell => cell.model.id === cellId
    );
    if (index < 0) {
      return;
    }
    this._docManager.openOrReveal(panel.context.path);
    panel.content.activeCellIndex = index;
    await panel.content.scrollToCell(panel.content.widgets[index]);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    clearTimeout(this._variablesTimer);
    this._unbind();
    this._session?.dispose();
    NotebookActions.executed.disconnect(this._onCellExecuted, this);
    super.dispose();
  }

  // ---- private ----------------------------------------------------------------------

  /** A readable line for a failed request. */
  private _describe(error: unknown): string {
    if (error instanceof DeepAnalyzeRequestError && error.status === null) {
      return this._trans.__(
        'Cannot reach the Jupyter server: %1',
        error.message
      );
    }
    return error instanceof Error ? error.message : String(error);
  }

  private _fail(message: string): void {
    this._error = message;
    this.stateChanged.emit();
  }

  /** Makes `record`'s run the current one and keeps the record while it runs. */
  private _adopt(record: IRunRecord): RunSession {
    this._unbind();
    this._session?.dispose();
    const session = new RunSession(this.client, record);
    this._session = session;
    this._store.active = record;
    session.changed.connect(this._onSessionChanged, this);
    return session;
  }

  private _onSessionChanged(session: RunSession): void {
    if (session !== this._session) {
      return;
    }
    if (session.finished && this._store.active?.runId === session.runId) {
      this._store.active = null;
      // The run may have created or changed dataframes.
      this._scheduleVariablesRefresh();
    }
    this.stateChanged.emit();
  }

  /**
   * Materializes `session` into `panel` while that notebook is open, following renames;
   * when it is closed, waits for it to be opened again (`_onNotebookOpened`).
   */
  private _bind(session: RunSession, panel: NotebookPanel): void {
    // Opening a notebook to resume a run also announces it as newly opened: bind once.
    if (this._binding?.session === session && this._binding.panel === panel) {
      return;
    }
    this._unbind();
    const onPathChanged = (_: unknown, path: string) => {
      session.notebookPath = path;
      if (this._store.active?.runId === session.runId) {
        this._store.active = session.record;
      }
    };
    const onClosed = () => {
      this._unbind();
      session.detach();
    };
    panel.context.pathChanged.connect(onPathChanged);
    panel.disposed.connect(onClosed);
    this._binding = {
      session,
      panel,
      dispose: () => {
        panel.context.pathChanged.disconnect(onPathChanged);
        panel.disposed.disconnect(onClosed);
      }
    };
    void panel.context.ready.then(() => {
      if (this._binding?.session === session && this._binding.panel === panel) {
        session.attach(notebookTarget(panel));
      }
    });
  }

  private _unbind(): void {
    this._binding?.dispose();
    this._binding = null;
  }

  private _onNotebookOpened(_: INotebookTracker, panel: NotebookPanel): void {
    const session = this._session;
    if (
      session &&
      !session.finished &&
      !session.attached &&
      panel.context.path === session.notebookPath
    ) {
      this._bind(session, panel);
    }
  }

  private _findNotebook(path: string): NotebookPanel | undefined {
    return this.tracker.find(panel => panel.context.path === path) ?? undefined;
  }

  private _kernelIdOf(panel: NotebookPanel | null | undefined): string | null {
    return panel?.sessionContext.session?.kernel?.id ?? null;
  }

  private _onCurrentNotebookChanged(): void {
    const panel = this.tracker.currentWidget;
    if (this._watchedPanel !== panel) {
      this._watchedPanel?.sessionContext.kernelChanged.disconnect(
        this._scheduleVariablesRefresh,
        this
      );
      this._watchedPanel = panel;
      panel?.sessionContext.kernelChanged.connect(
        this._scheduleVariablesRefresh,
        this
      );
    }
    this._scheduleVariablesRefresh();
  }

  private _onCellExecuted(_: unknown, args: { notebook: unknown }): void {
    if (args.notebook === this.tracker.currentWidget?.content) {
      this._scheduleVariablesRefresh();
    }
  }

  /** Debounced: a "Run all" executes many cells in a row. */
  private _scheduleVariablesRefresh(): void {
    clearTimeout(this._variablesTimer);
    this._variablesTimer = setTimeout(() => {
      void this.refreshVariables();
    }, VARIABLES_REFRESH_DELAY_MS);
  }

  private readonly _docManager: IDocumentManager;
  private readonly _store: RunRecordStore;
  private readonly _trans: TranslationBundle;
  private _settings: IAssistantSettings = { ...DEFAULT_SETTINGS };
  private _approval: ApprovalMode = DEFAULT_SETTINGS.approval;
  private _models: IModelInfo[] = [];
  private _modelsError: string | null = null;
  private _pickedModel = '';
  private _serverDefaultModel = '';
  private _variables: IVariableInfo[] = [];
  private _variablesError: string | null = null;
  private _variablesKernelId: string | null = null;
  private _variablesRequest = 0;
  private _variablesTimer: ReturnType<typeof setTimeout> | undefined;
  private _watchedPanel: NotebookPanel | null = null;
  private _binding: {
    session: RunSession;
    panel: NotebookPanel;
    dispose(): void;
  } | null = null;
  private _session: RunSession | null = null;
  private _starting = false;
  private _error: string | null = null;
}
