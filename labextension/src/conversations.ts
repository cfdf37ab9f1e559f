/**
 * Conversations: one thread of runs per notebook, each question following up the last.
 *
 * Owns, per notebook path, the thread the sidebar shows (its runs in order, each a
 * `RunSession`, and the kernel they ran on), which run a new question follows up (the
 * thread's last run once it has finished, on the same kernel), "New conversation",
 * rebuilding a thread from the server after a page reload (the newest run on the
 * notebook's kernel and the runs it follows up, from `GET /deepanalyze/runs`), and the
 * thread's exports (`POST /deepanalyze/runs/{id}/export`, written beside the notebook).
 *
 * Must not render, start runs or follow a run in progress: the run controller does, and
 * registers its runs here. Errors are kept as readable lines, never thrown at a view.
 */

import { type ISignal, Signal } from '@lumino/signaling';

import type { DeepAnalyzeClient, ExportFormat, IRunSummary } from './api';
import type { Labels } from './labels';
import type { IOpenNotebook } from './notebooks';
import { RunSession } from './session';

/** The runs of one notebook's conversation, first question first. */
interface IThread {
  kernelId: string | null;
  runIds: string[];
}

/** An export of a run, once written (or why it was not). */
export interface IExportResult {
  format: ExportFormat;
  /** Server-root relative path of the file written, or null when it failed. */
  path: string | null;
  error: string | null;
}

/** Most runs of one conversation read back from the server. */
const MAX_THREAD = 50;

export class Conversations {
  constructor(
    private readonly client: DeepAnalyzeClient,
    private readonly labels: Labels
  ) {}

  /** Emitted when a thread, a run of one, or an export changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The runs of the conversation in `path`, first question first. */
  thread(path: string): RunSession[] {
    const thread = this._threads.get(path);
    if (!thread) {
      return [];
    }
    return thread.runIds.flatMap(id => {
      const session = this._sessions.get(id);
      return session ? [session] : [];
    });
  }

  /**
   * The run a question asked in `path` now follows up: the conversation's last run, once
   * it has finished and if it ran on `kernelId` (its variables are there). Null starts a
   * new conversation.
   */
  parentFor(path: string, kernelId: string | null): string | null {
    const thread = this._threads.get(path);
    const last = thread?.runIds[thread.runIds.length - 1];
    const session = last ? this._sessions.get(last) : undefined;
    if (
      !thread ||
      !session ||
      !session.finished ||
      thread.kernelId !== kernelId
    ) {
      return null;
    }
    return session.runId;
  }

  /**
   * Adds a run started (or followed) in `path` on `kernelId`: it continues the thread
   * when it follows up the thread's last run, else it starts a new one.
   */
  register(
    path: string,
    kernelId: string | null,
    session: RunSession,
    parentRunId: string | null
  ): void {
    this._sessions.set(session.runId, session);
    session.changed.connect(this._onSessionChanged, this);
    const thread = this._threads.get(path);
    if (thread?.runIds.includes(session.runId)) {
      return;
    }
    const continues =
      thread !== undefined &&
      parentRunId !== null &&
      thread.runIds[thread.runIds.length - 1] === parentRunId;
    this._threads.set(path, {
      kernelId,
      runIds: continues ? [...thread.runIds, session.runId] : [session.runId]
    });
    this._loaded.add(path);
    this._changed.emit();
  }

  /** "New conversation": the next question in `path` starts afresh. */
  startNew(path: string): void {
    this._threads.delete(path);
    this._loaded.add(path);
    this._changed.emit();
  }

  /** The thread follows its notebook through a rename. */
  rename(oldPath: string, newPath: string): void {
    const thread = this._threads.get(oldPath);
    if (thread && !this._threads.has(newPath)) {
      this._threads.delete(oldPath);
      this._threads.set(newPath, thread);
      this._loaded.add(newPath);
      this._changed.emit();
    }
  }

  /**
   * Rebuilds the conversation of `notebook` from the server, once per page: the newest
   * run on its kernel and the runs it follows up. Runs still in progress are left to
   * the run controller, which follows them.
   */
  async load(notebook: IOpenNotebook): Promise<void> {
    const path = notebook.path;
    if (this._loaded.has(path)) {
      return;
    }
    this._loaded.add(path);
    await notebook.ready();
    const kernelId = notebook.kernelId;
    if (kernelId === null) {
      return;
    }
    let runs: IRunSummary[];
    try {
      runs = await this.client.listRuns(kernelId);
    } catch (error) {
      console.warn('DeepAnalyze: cannot list the runs of a kernel', error);
      return;
    }
    const byId = new Map(runs.map(run => [run.run_id, run]));
    const chain: string[] = [];
    let next: IRunSummary | undefined = runs[0]; // newest first
    while (next && chain.length < MAX_THREAD && !chain.includes(next.run_id)) {
      chain.unshift(next.run_id);
      next = next.parent_run_id ? byId.get(next.parent_run_id) : undefined;
    }
    const finished = chain.filter(id => {
      const status = byId.get(id)?.status;
      return status !== 'running' && status !== 'waiting_approval';
    });
    for (const runId of finished) {
      if (this._sessions.has(runId)) {
        continue;
      }
      const session = new RunSession(this.client, {
        runId,
        notebookPath: path,
        anchorCellId: null,
        startedAt: Date.now()
      });
      try {
        await session.resume(); // finished: its events, no stream
      } catch (error) {
        console.warn(
          'DeepAnalyze: cannot read a run of the conversation',
          error
        );
        session.dispose();
        return;
      }
      this._sessions.set(runId, session);
    }
    const thread = this._threads.get(path);
    // A run registered meanwhile (the controller resumed or started one) stays last.
    const extra = (thread?.runIds ?? []).filter(id => !chain.includes(id));
    this._threads.set(path, { kernelId, runIds: [...chain, ...extra] });
    this._changed.emit();
  }

  /** The last export of `runId`, if any. */
  exported(runId: string): IExportResult | undefined {
    return this._exports.get(runId);
  }

  /** Whether an export of `runId` is being written. */
  exporting(runId: string): boolean {
    return this._exporting.has(runId);
  }

  /** Writes the conversation up to `session`'s run as `format` beside its notebook. */
  async export(session: RunSession, format: ExportFormat): Promise<void> {
    const runId = session.runId;
    this._exporting.add(runId);
    this._changed.emit();
    try {
      const reply = await this.client.exportRun(
        runId,
        format,
        session.notebookPath
      );
      this._exports.set(runId, { format, path: reply.path, error: null });
    } catch (error) {
      this._exports.set(runId, {
        format,
        path: null,
        error: this.labels.failure(error)
      });
    } finally {
      this._exporting.delete(runId);
      this._changed.emit();
    }
  }

  dispose(): void {
    for (const session of this._sessions.values()) {
      session.changed.disconnect(this._onSessionChanged, this);
    }
    Signal.clearData(this);
  }

  private _onSessionChanged(): void {
    this._changed.emit();
  }

  private readonly _changed = new Signal<this, void>(this);
  private readonly _threads = new Map<string, IThread>();
  private readonly _sessions = new Map<string, RunSession>();
  private readonly _loaded = new Set<string>();
  private readonly _exports = new Map<string, IExportResult>();
  private readonly _exporting = new Set<string>();
}
