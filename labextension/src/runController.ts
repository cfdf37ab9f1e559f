/**
 * The sidebar's current run: starting it, following it, and the notebook it writes into.
 *
 * Owns one run at a time: starting it in a notebook (the current one by default) with
 * its anchor cell and the dataframes its question names — as a follow-up of the last
 * run of the notebook's conversation when there is one (`conversations.ts`), its cells
 * below that run's; a start refused with 409
 * because another tab's run holds the kernel, which is then followed instead; resuming
 * after a page reload (the run this browser remembers, else one the server runs on an
 * open notebook's kernel); Stop and Run/Skip; and the binding between the run and its
 * notebook, found again by path when it is reopened, followed through renames. The
 * event stream itself (replay, reconnection with `?since=`) is the session's
 * (`session.ts`), the cells the materializer's.
 *
 * Must not render, read settings or touch JupyterLab widgets: notebooks come through
 * `INotebookHost`, settings through `IRunControllerOptions.runSettings`. Errors are kept
 * as readable lines (`error`), never thrown at a view.
 */

import { type ISignal, Signal } from '@lumino/signaling';

import {
  type ApprovalMode,
  DeepAnalyzeClient,
  DeepAnalyzeRequestError,
  type IRunSummary,
  type IStartRunReply,
  type IStartRunRequest
} from './api';
import { variablesForQuestion } from './context';
import type { Conversations } from './conversations';
import type { Labels } from './labels';
import { anchorBelow, lastCellOfRun } from './runCells';
import type { INotebookHost, IOpenNotebook } from './notebooks';
import { type IRunRecord, RunRecordStore, RunSession } from './session';
import type { CellPlacement } from './settings';

/** What new runs use, read when one starts. */
export interface IRunSettings {
  /** Model spec; empty for the server's default. */
  model: string;
  approval: ApprovalMode;
  placement: CellPlacement;
}

export interface IRunControllerOptions {
  client: DeepAnalyzeClient;
  notebooks: INotebookHost;
  store: RunRecordStore;
  labels: Labels;
  /** The notebooks' conversations: a new question follows up their last run. */
  conversations: Conversations;
  runSettings(): IRunSettings;
  /**
   * Names of the dataframes listed for `kernelId`: a question typed in the sidebar
   * describes those it names (else all of a few) to the model.
   */
  listedVariables(kernelId: string | null): string[];
}

export interface ISendOptions {
  /** Names of kernel variables the run is about. */
  variables?: string[];
  /** The notebook to run in; the current one by default. */
  notebook?: IOpenNotebook;
  placement?: CellPlacement;
}

export class RunController {
  constructor(private readonly options: IRunControllerOptions) {
    this._client = options.client;
    this._notebooks = options.notebooks;
    this._store = options.store;
    this._labels = options.labels;
    this._notebooks.opened.connect(this._onNotebookOpened, this);
  }

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

  /** Emitted after every change a view may show (every event of the run included). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted once when the current run ends (its code may have changed dataframes). */
  get runEnded(): ISignal<this, RunSession> {
    return this._runEnded;
  }

  /**
   * Starts a run in a notebook (the current one by default) and materializes it there.
   * Resolves with the run id, or null when it did not start (see `error`).
   */
  async send(
    question: string,
    options: ISendOptions = {}
  ): Promise<string | null> {
    question = question.trim();
    if (!question || this.busy) {
      return null;
    }
    const notebook = options.notebook ?? this._notebooks.current;
    if (!notebook) {
      this._fail(this._labels.openNotebookToAnalyze);
      return null;
    }
    this._starting = true;
    this._error = null;
    this._changed.emit();
    try {
      await notebook.ready();
      const kernelId = notebook.kernelId;
      const settings = this.options.runSettings();
      const placement = options.placement ?? settings.placement;
      const parentRunId = this.options.conversations.parentFor(
        notebook.path,
        kernelId
      );
      // The anchor is taken now, when the user presses Send: switching tabs or
      // moving the cursor later does not move the run. A follow-up's cells go below
      // the cells of the run it follows up.
      const followed =
        parentRunId !== null
          ? lastCellOfRun(notebook.target, parentRunId)
          : null;
      const anchorCellId =
        followed ??
        (placement === 'below-active-cell'
          ? anchorBelow(notebook.target, notebook.activeCellId)
          : null);
      const variables =
        options.variables ??
        variablesForQuestion(question, this.options.listedVariables(kernelId));
      const request = (names: string[]): IStartRunRequest => ({
        question,
        notebook_path: notebook.path,
        ...(kernelId ? { kernel_id: kernelId } : {}),
        ...(names.length ? { variables: names } : {}),
        ...(settings.model ? { model: settings.model } : {}),
        ...(parentRunId ? { parent_run_id: parentRunId } : {}),
        approval: settings.approval
      });
      let reply: IStartRunReply;
      try {
        reply = await this._client.startRun(request(variables));
      } catch (error) {
        if (
          !(error instanceof DeepAnalyzeRequestError && error.status === 409) ||
          kernelId === null
        ) {
          throw error;
        }
        // 409: the kernel already has a run (started in another tab, or before this
        // page was loaded), or it was too busy to describe its dataframes.
        const active = await this._activeRunOn(kernelId);
        if (active !== null) {
          await this._followRun(active.run_id, notebook);
          this._fail(this._labels.kernelBusyWithRun);
          return null;
        }
        if (options.variables !== undefined || variables.length === 0) {
          throw error;
        }
        // Busy with a cell of the user's: start without describing the dataframes;
        // the run's code waits for that cell in the kernel's queue.
        reply = await this._client.startRun(request([]));
      }
      const session = this._adopt({
        runId: reply.run_id,
        notebookPath: notebook.path,
        anchorCellId,
        startedAt: Date.now()
      });
      this.options.conversations.register(
        notebook.path,
        kernelId,
        session,
        parentRunId
      );
      this._bind(session, notebook);
      session.follow();
      return reply.run_id;
    } catch (error) {
      this._fail(this._labels.failure(error));
      return null;
    } finally {
      this._starting = false;
      this._changed.emit();
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
      this._fail(this._labels.failure(error));
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
      this._fail(this._labels.failure(error));
    }
  }

  /**
   * Resumes the run that was in progress when the page was (re)loaded: the one this
   * browser remembers, else one the server runs on the kernel of an open notebook
   * (started from another browser, or remembered no more).
   */
  async restore(): Promise<void> {
    if (this._session) {
      return;
    }
    if (!(await this._restoreRemembered())) {
      await this._findActiveRun();
    }
  }

  /** The notebook of the current run, when it is open. */
  get notebook(): IOpenNotebook | undefined {
    const session = this._session;
    return session ? this._notebooks.find(session.notebookPath) : undefined;
  }

  /** Activates and shows a cell of the current run in its notebook. */
  async revealCell(cellId: string): Promise<void> {
    const session = this._session;
    const notebook = session
      ? this._notebooks.find(session.notebookPath)
      : undefined;
    await notebook?.revealCell(cellId);
  }

  dispose(): void {
    this._unbind();
    this._session?.dispose();
    this._notebooks.opened.disconnect(this._onNotebookOpened, this);
    Signal.clearData(this);
  }

  /** Resumes the run of this browser's record; false when there is nothing to resume. */
  private async _restoreRemembered(): Promise<boolean> {
    const record = this._store.active;
    if (!record) {
      return false;
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
        this._changed.emit();
        return false;
      }
      // The record stays (a later reload may succeed); the sidebar is free for new runs.
      this._fail(this._labels.cannotResume(this._labels.failure(error)));
      return true;
    }
    // Bound even when the run finished meanwhile: the events that arrived while the
    // page reloaded still have to become cells.
    await this._notebooks.restored;
    const notebook =
      this._notebooks.find(record.notebookPath) ??
      this._notebooks.open(record.notebookPath);
    if (notebook) {
      this._register(session, notebook);
      this._bind(session, notebook);
    }
    return true;
  }

  /** Follows a run the server has in progress on the kernel of an open notebook. */
  private async _findActiveRun(): Promise<void> {
    await this._notebooks.restored;
    for (const notebook of this._notebooks.all()) {
      await notebook.ready();
      const kernelId = notebook.kernelId;
      if (this._session || notebook.isClosed || kernelId === null) {
        continue;
      }
      const active = await this._activeRunOn(kernelId);
      if (active !== null && !this._session) {
        await this._followRun(active.run_id, notebook);
        return;
      }
    }
  }

  /** The run in progress on `kernelId`, or null (also when the server cannot say). */
  private async _activeRunOn(kernelId: string): Promise<IRunSummary | null> {
    try {
      const runs = await this._client.listRuns(kernelId);
      return (
        runs.find(
          run => run.status === 'running' || run.status === 'waiting_approval'
        ) ?? null
      );
    } catch (error) {
      console.warn('DeepAnalyze: cannot list the runs of a kernel', error);
      return null;
    }
  }

  /**
   * Makes a run this page did not start the current one, materialized into `notebook`:
   * its cells already in the notebook are adopted, the others go to its end.
   */
  private async _followRun(
    runId: string,
    notebook: IOpenNotebook
  ): Promise<void> {
    const session = this._adopt({
      runId,
      notebookPath: notebook.path,
      anchorCellId: null,
      // Not when it started (events carry no time): the elapsed time counts from here.
      startedAt: Date.now()
    });
    try {
      await session.resume();
    } catch (error) {
      session.dispose();
      this._session = null;
      this._store.active = null;
      this._fail(this._labels.cannotFollow(this._labels.failure(error)));
      return;
    }
    this._register(session, notebook);
    this._bind(session, notebook);
    this._changed.emit();
  }

  /** Adds a run this page follows (not started here) to its notebook's conversation. */
  private _register(session: RunSession, notebook: IOpenNotebook): void {
    this.options.conversations.register(
      notebook.path,
      notebook.kernelId,
      session,
      session.transcript.parentRunId
    );
  }

  private _fail(message: string): void {
    this._error = message;
    this._changed.emit();
  }

  /** Makes `record`'s run the current one and keeps the record while it runs. */
  private _adopt(record: IRunRecord): RunSession {
    this._unbind();
    this._session?.dispose();
    const session = new RunSession(this._client, record);
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
      this._runEnded.emit(session);
    }
    this._changed.emit();
  }

  /**
   * Materializes `session` into `notebook` while it is open, following renames; when it
   * is closed, waits for it to be opened again (`_onNotebookOpened`).
   */
  private _bind(session: RunSession, notebook: IOpenNotebook): void {
    // Opening a notebook to resume a run also announces it as newly opened: bind once.
    if (
      this._binding?.session === session &&
      this._binding.notebook === notebook
    ) {
      return;
    }
    this._unbind();
    const onPathChanged = (_: IOpenNotebook, path: string) => {
      this.options.conversations.rename(session.notebookPath, path);
      session.notebookPath = path;
      if (this._store.active?.runId === session.runId) {
        this._store.active = session.record;
      }
    };
    const onClosed = () => {
      this._unbind();
      session.detach();
    };
    notebook.pathChanged.connect(onPathChanged);
    notebook.closed.connect(onClosed);
    this._binding = {
      session,
      notebook,
      dispose: () => {
        notebook.pathChanged.disconnect(onPathChanged);
        notebook.closed.disconnect(onClosed);
      }
    };
    void notebook.contentReady().then(() => {
      if (
        this._binding?.session === session &&
        this._binding.notebook === notebook
      ) {
        session.attach(notebook.target);
      }
    });
  }

  private _unbind(): void {
    this._binding?.dispose();
    this._binding = null;
  }

  private _onNotebookOpened(_: INotebookHost, notebook: IOpenNotebook): void {
    const session = this._session;
    if (
      session &&
      !session.finished &&
      !session.attached &&
      notebook.path === session.notebookPath
    ) {
      this._bind(session, notebook);
    }
  }

  private readonly _client: DeepAnalyzeClient;
  private readonly _notebooks: INotebookHost;
  private readonly _store: RunRecordStore;
  private readonly _labels: Labels;
  private readonly _changed = new Signal<this, void>(this);
  private readonly _runEnded = new Signal<this, RunSession>(this);
  private _binding: {
    session: RunSession;
    notebook: IOpenNotebook;
    dispose(): void;
  } | null = null;
  private _session: RunSession | null = null;
  private _starting = false;
  private _error: string | null = null;
}
