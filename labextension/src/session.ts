/**
 * One run as the frontend follows it.
 *
 * Owns the run's event log as received, its chat transcript, its materializer into the
 * target notebook while that notebook is open, and its event stream (new runs from
 * `seq` 0; a run resumed after a page reload from the server's log, then the websocket
 * from the next `seq`). Also the small record that lets a reloaded page find the run
 * again.
 *
 * Must not find notebooks or render anything: the assistant model hands it a notebook
 * target, views read it.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { DeepAnalyzeClient, type IStreamClose, RunEventStream } from './api';
import type { RunEvent } from './events';
import { RunMaterializer } from './materializer';
import type { INotebookTarget } from './runCells';
import { type IPendingApproval, RunTranscript } from './transcript';

/** What a reloaded page needs to resume a run. */
export interface IRunRecord {
  runId: string;
  notebookPath: string;
  /** The cell below which the run's first cell goes, or null for the end. */
  anchorCellId: string | null;
  /** Epoch milliseconds when the run was started, for the elapsed time. */
  startedAt: number;
}

/**
 * Where the records live: the browser's localStorage, keyed by server, so that a reload
 * of this JupyterLab (the workspace's state DB would save too late for a reload right
 * after Send) finds its run again.
 */
export class RunRecordStore {
  constructor(
    private readonly storage: Pick<
      Storage,
      'getItem' | 'setItem' | 'removeItem'
    >,
    serverBaseUrl: string
  ) {
    this._activeKey = `jupyter-deepanalyze:active-run:${serverBaseUrl}`;
    this._lastKey = `jupyter-deepanalyze:last-run:${serverBaseUrl}`;
  }

  /** The run that was in progress, if any. */
  get active(): IRunRecord | null {
    return this._read(this._activeKey);
  }

  set active(record: IRunRecord | null) {
    this._write(this._activeKey, record);
    if (record) {
      this._write(this._lastKey, record);
    }
  }

  /** The run started most recently, finished or not. */
  get last(): IRunRecord | null {
    return this._read(this._lastKey);
  }

  private _read(key: string): IRunRecord | null {
    try {
      const value = JSON.parse(this.storage.getItem(key) ?? 'null');
      return value && typeof value.runId === 'string'
        ? (value as IRunRecord)
        : null;
    } catch {
      return null;
    }
  }

  private _write(key: string, record: IRunRecord | null): void {
    if (record) {
      this.storage.setItem(key, JSON.stringify(record));
    } else {
      this.storage.removeItem(key);
    }
  }

  private readonly _activeKey: string;
  private readonly _lastKey: string;
}

export class RunSession {
  constructor(
    private readonly client: DeepAnalyzeClient,
    record: IRunRecord
  ) {
    this._record = { ...record };
    this.transcript = new RunTranscript(record.runId);
  }

  readonly transcript: RunTranscript;

  get runId(): string {
    return this._record.runId;
  }

  get record(): IRunRecord {
    return { ...this._record };
  }

  get notebookPath(): string {
    return this._record.notebookPath;
  }

  set notebookPath(path: string) {
    this._record.notebookPath = path;
    this._changed.emit();
  }

  get startedAt(): number {
    return this._record.startedAt;
  }

  /** Epoch milliseconds when `run_finished` arrived, or null. */
  get finishedAt(): number | null {
    return this._finishedAt;
  }

  get finished(): boolean {
    return this.transcript.finished;
  }

  /** Code cells waiting for Run or Skip. */
  get pendingApprovals(): IPendingApproval[] {
    return this.transcript.pendingApprovals;
  }

  /** Whether the run's notebook is open and receiving cells. */
  get attached(): boolean {
    return this._materializer !== null;
  }

  /** How the event stream ended when following the run failed, or null. */
  get streamError(): IStreamClose | null {
    return this._streamError;
  }

  /** Emitted after every change a view may show. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /**
   * Starts materializing into `target` (the run's notebook, just opened or reopened):
   * every event so far is replayed onto it, which adopts the cells it already holds.
   */
  attach(target: INotebookTarget): void {
    this._materializer = new RunMaterializer(target, {
      runId: this.runId,
      anchorCellId: this._record.anchorCellId
    });
    this._materializer.applyAll(this._events);
    this._changed.emit();
  }

  /** Stops materializing (the notebook was closed); events keep being collected. */
  detach(): void {
    this._materializer = null;
    this._changed.emit();
  }

  /** The current source of one of the run's cells, if its notebook is open. */
  cellSource(cellId: string): string | undefined {
    return this._materializer?.findCell(cellId)?.getSource();
  }

  /** Follows a run just started: the websocket replays it from its first event. */
  follow(): void {
    this._stream(0);
  }

  /**
   * Follows a run started before this page loaded: catch up from the server's log, then
   * stream what comes after it. Rejects when the server no longer knows the run.
   */
  async resume(): Promise<void> {
    const info = await this.client.getRun(this.runId);
    for (const event of info.events) {
      this._receive(event);
    }
    if (!this.finished) {
      const last = info.events.reduce((max, e) => Math.max(max, e.seq), -1);
      this._stream(last + 1);
    }
  }

  cancel(): Promise<void> {
    return this.client.cancelRun(this.runId);
  }

  /**
   * Answers an approval. Run sends the cell's current source, so edits the user made in
   * the notebook are what runs.
   */
  async decide(cellId: string, action: 'run' | 'skip'): Promise<void> {
    if (action === 'skip') {
      await this.client.approve(this.runId, { cell_id: cellId, action });
      return;
    }
    const proposed = this.pendingApprovals.find(p => p.cellId === cellId)?.code;
    const code = this.cellSource(cellId) ?? proposed;
    await this.client.approve(this.runId, {
      cell_id: cellId,
      action,
      ...(code === undefined ? {} : { code })
    });
  }

  dispose(): void {
    this._socket?.dispose();
    this._socket = null;
    Signal.clearData(this);
  }

  private _stream(since: number): void {
    this._socket?.dispose();
    this._streamError = null;
    this._socket = this.client.streamEvents(this.runId, since, {
      onEvent: event => this._receive(event),
      onError: close => {
        this._streamError = close;
        this._changed.emit();
      }
    });
  }

  private _receive(event: RunEvent): void {
    if (!this.transcript.apply(event)) {
      return;
    }
    this._events.push(event);
    this._materializer?.apply(event);
    if (event.type === 'run_finished') {
      this._finishedAt = Date.now();
    }
    this._changed.emit();
  }

  private readonly _record: IRunRecord;
  private readonly _events: RunEvent[] = [];
  private readonly _changed = new Signal<this, void>(this);
  private _materializer: RunMaterializer | null = null;
  private _socket: RunEventStream | null = null;
  private _streamError: IStreamClose | null = null;
  private _finishedAt: number | null = null;
}
