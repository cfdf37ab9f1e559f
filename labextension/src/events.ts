/**
 * The event stream as the frontend sees it.
 *
 * Owns the TypeScript shapes of the events defined by `jupyter_deepanalyze/events.py`
 * (ARCHITECTURE.md, "Events"), the cell metadata every agent cell carries, and the MIME
 * type of the `%analyze` magic's output. Pure types and guards: no I/O, no DOM.
 */

import type * as nbformat from '@jupyterlab/nbformat';

/** MIME type of the `%analyze` magic's display: `{version: 1, run_id, events}`. */
export const RUN_MIME_TYPE = 'application/vnd.deepanalyze.run+json';

/** Roles of the cells an agent adds (`metadata.deepanalyze.role`). */
export type CellRole =
  'title' | 'analyze' | 'understand' | 'note' | 'code' | 'report' | 'status';

/** `metadata.deepanalyze` of every cell the agent adds. */
export interface ICellProvenance {
  run_id: string;
  step: number;
  role: CellRole;
}

export type ExecutionStatus =
  'ok' | 'error' | 'timeout' | 'interrupted' | 'skipped';

/** Final statuses of `run_finished`. */
export type FinalRunStatus =
  'completed' | 'cancelled' | 'failed' | 'max_rounds';

/** What `GET /deepanalyze/runs/{id}` reports: live statuses plus the final ones. */
export type RunStatus = 'running' | 'waiting_approval' | FinalRunStatus;

interface IEventBase {
  seq: number;
  run_id: string;
}

export interface IRunStartedEvent extends IEventBase {
  type: 'run_started';
  question: string;
  model: string;
  kernel_id?: string | null;
}

export interface IDeltaEvent extends IEventBase {
  type: 'delta';
  step: number;
  text: string;
  tag?: string | null;
}

export interface ISegmentEvent extends IEventBase {
  type: 'segment';
  step: number;
  tag: string | null;
  text: string;
}

export interface ICellEvent extends IEventBase {
  type: 'cell';
  cell_id: string;
  cell_type: 'code' | 'markdown' | 'raw';
  source: string;
  metadata: { deepanalyze?: ICellProvenance; [key: string]: unknown };
}

export interface IApprovalRequiredEvent extends IEventBase {
  type: 'approval_required';
  cell_id: string;
  code: string;
}

export interface IOutputEvent extends IEventBase {
  type: 'output';
  cell_id: string;
  output: nbformat.IOutput;
}

export interface IExecutionFinishedEvent extends IEventBase {
  type: 'execution_finished';
  cell_id: string;
  status: ExecutionStatus;
  execution_count?: number | null;
  feedback?: string;
  /** Set when what ran differs from the cell's source (edited on approval). */
  code?: string | null;
}

export interface IRunFinishedEvent extends IEventBase {
  type: 'run_finished';
  status: FinalRunStatus;
  report_cell_id?: string | null;
  error?: string | null;
}

export type RunEvent =
  | IRunStartedEvent
  | IDeltaEvent
  | ISegmentEvent
  | ICellEvent
  | IApprovalRequiredEvent
  | IOutputEvent
  | IExecutionFinishedEvent
  | IRunFinishedEvent;

export type RunEventType = RunEvent['type'];

const EVENT_TYPES: ReadonlySet<string> = new Set<RunEventType>([
  'run_started',
  'delta',
  'segment',
  'cell',
  'approval_required',
  'output',
  'execution_finished',
  'run_finished'
]);

/**
 * Whether `value` looks like an event of the stream.
 *
 * Only the envelope is checked: unknown event types are rejected (a sink cannot act on
 * them), unknown extra fields are tolerated so that an older frontend keeps working
 * with a newer server, as `events.from_json` does on the Python side.
 */
export function isRunEvent(value: unknown): value is RunEvent {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const event = value as { seq?: unknown; type?: unknown; run_id?: unknown };
  return (
    typeof event.seq === 'number' &&
    typeof event.run_id === 'string' &&
    typeof event.type === 'string' &&
    EVENT_TYPES.has(event.type)
  );
}

/** The `%analyze` magic's MIME bundle. */
export interface IRunBundle {
  version: 1;
  run_id: string;
  events: RunEvent[];
}

/** Validates a MIME bundle; throws an Error with a readable message otherwise. */
export function parseRunBundle(data: unknown): IRunBundle {
  if (typeof data !== 'object' || data === null) {
    throw new Error('DeepAnalyze output is not a JSON object');
  }
  const bundle = data as Partial<IRunBundle>;
  if (bundle.version !== 1) {
    throw new Error(
      `Unsupported DeepAnalyze output version ${String(bundle.version)}`
    );
  }
  if (typeof bundle.run_id !== 'string' || !Array.isArray(bundle.events)) {
    throw new Error('DeepAnalyze output lacks run_id or events');
  }
  return {
    version: 1,
    run_id: bundle.run_id,
    events: bundle.events.filter(isRunEvent)
  };
}
