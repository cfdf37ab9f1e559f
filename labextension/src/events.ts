/**
 * The event stream as the frontend sees it.
 *
 * Owns the TypeScript shapes of the events defined by `jupyter_deepanalyze/events.py`
 * (ARCHITECTURE.md, "Events"), field for field, the cell ids and metadata every agent
 * cell carries (`cellIdFor` is the one TypeScript twin of `events.cell_id_for`), and the
 * MIME type of the `%analyze` magic's output. The golden test
 * (`test/golden.spec.ts`, over `tests/golden/run-events.jsonl` that a real Python run
 * wrote) holds the two languages to the same contract.
 *
 * Must not do I/O or touch the DOM: pure types and guards.
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

/**
 * The nbformat id of a run's step: `events.cell_id_for` of the Python package, so that
 * the cell a run creates has the same id whichever side names it.
 */
export function cellIdFor(runId: string, step: number): string {
  return `da-${runId.slice(0, 16)}-${step}`;
}

/**
 * `dead`: the kernel died or was restarted under the run (its variables are gone).
 * `unresponsive`: the code ignored the interrupt (it catches `KeyboardInterrupt`) and the
 * kernel is still busy with it; restarting the kernel frees it.
 */
export type ExecutionStatus =
  | 'ok'
  | 'error'
  | 'timeout'
  | 'interrupted'
  | 'skipped'
  | 'dead'
  | 'unresponsive';

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
  /** Set for a follow-up: the finished run whose conversation this run continues. */
  parent_run_id?: string | null;
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

/**
 * The kinds of cell an agent creates. A `cell` event of any other type becomes a
 * markdown cell, in the live notebook as in `notebook.NotebookBuilder`.
 */
export type AgentCellType = 'code' | 'markdown';

export interface ICellEvent extends IEventBase {
  type: 'cell';
  cell_id: string;
  cell_type: AgentCellType;
  source: string;
  metadata: { deepanalyze?: ICellProvenance; [key: string]: unknown };
}

export interface IApprovalRequiredEvent extends IEventBase {
  type: 'approval_required';
  cell_id: string;
  code: string;
}

/**
 * Appends `output` to the cell; with `display_id`, the output is remembered under that
 * id. With `update` (`update_display_data`), `output` instead replaces every output of
 * the run remembered under `display_id`, in whatever cell, and nothing is appended.
 */
export interface IOutputEvent extends IEventBase {
  type: 'output';
  cell_id: string;
  output: nbformat.IOutput;
  display_id?: string | null;
  update?: boolean;
}

/**
 * The code called `clear_output`: the cell's outputs are cleared now, or, with `wait`,
 * just before the next output appended to it.
 */
export interface IClearOutputEvent extends IEventBase {
  type: 'clear_output';
  cell_id: string;
  wait?: boolean;
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

export type ArtifactStatus = 'created' | 'modified';

/** A file the last execution created or modified in the run's working folder. */
export interface IArtifact {
  /** Relative to the run's working folder. */
  path: string;
  /** Bytes. */
  size: number;
  status: ArtifactStatus;
}

export interface IArtifactsEvent extends IEventBase {
  type: 'artifacts';
  step: number;
  files: IArtifact[];
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
  | IClearOutputEvent
  | IExecutionFinishedEvent
  | IArtifactsEvent
  | IRunFinishedEvent;

export type RunEventType = RunEvent['type'];

/** Every event type, checked complete against `RunEvent` by the compiler. */
const EVENT_TYPES: Readonly<Record<RunEventType, true>> = {
  run_started: true,
  delta: true,
  segment: true,
  cell: true,
  approval_required: true,
  output: true,
  clear_output: true,
  execution_finished: true,
  artifacts: true,
  run_finished: true
};

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
    Object.prototype.hasOwnProperty.call(EVENT_TYPES, event.type)
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
