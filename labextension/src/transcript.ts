/**
 * The chat view of a run: events → the steps a person reads in the sidebar.
 *
 * Owns how `delta`/`segment` text streams into steps, how code cells, their execution
 * status and pending approvals attach to the step that wrote them, and how a run's
 * status and error read. Pure data: no DOM, no notebook (cells are the materializer's).
 */

import type {
  ExecutionStatus,
  FinalRunStatus,
  IArtifact,
  ICellEvent,
  RunEvent,
  RunStatus
} from './events';

/** What kind of step an entry is, as shown in its label. */
export type StepKind =
  'Analyze' | 'Understand' | 'Code' | 'Answer' | 'Note' | 'Status';

export interface IExecutionSummary {
  status: ExecutionStatus;
  executionCount: number | null;
  /** What the model was told about the execution (text output or the error). */
  feedback: string;
}

export interface ITranscriptEntry {
  step: number;
  kind: StepKind;
  text: string;
  /** True while `delta` text arrives and the step's `segment` has not. */
  streaming: boolean;
  /** Id of the notebook cell the step became, if any. */
  cellId?: string;
  execution?: IExecutionSummary;
  /** The code the agent asks to run, while it waits for the user's Run or Skip. */
  approvalCode: string | null;
}

/** A code cell waiting for the user's Run or Skip. */
export interface IPendingApproval {
  cellId: string;
  /** The code as the agent proposed it; the cell's current source may differ. */
  code: string;
}

const TAG_KINDS: Record<string, StepKind> = {
  Analyze: 'Analyze',
  Understand: 'Understand',
  Code: 'Code',
  Answer: 'Answer'
};

const ROLE_KINDS: Record<string, StepKind | undefined> = {
  analyze: 'Analyze',
  understand: 'Understand',
  note: 'Note',
  code: 'Code',
  report: 'Answer',
  status: 'Status',
  // The title cell repeats the question, which the view shows once, as its header.
  title: undefined
};

function kindOfTag(tag: string | null | undefined): StepKind {
  return (tag && TAG_KINDS[tag]) || 'Note';
}

/** Folds one run's events into what its chat view shows. */
export class RunTranscript {
  constructor(readonly runId: string) {}

  question = '';
  model = '';
  /** The run this one follows up (a follow-up question), or null. */
  parentRunId: string | null = null;

  /**
   * The files the run's code wrote in its working folder, in the order first reported;
   * a file created and then changed stays `created`, with its latest size.
   */
  get files(): readonly IArtifact[] {
    return [...this._files.values()];
  }
  /** `running` until `run_finished`; `waiting_approval` while a cell awaits Run/Skip. */
  get status(): RunStatus {
    if (this._finalStatus !== null) {
      return this._finalStatus;
    }
    return this.pendingApprovals.length ? 'waiting_approval' : 'running';
  }

  /** Code cells waiting for Run or Skip, in the order the run wrote them. */
  get pendingApprovals(): IPendingApproval[] {
    return this._entries.flatMap(entry =>
      entry.cellId !== undefined && entry.approvalCode !== null
        ? [{ cellId: entry.cellId, code: entry.approvalCode }]
        : []
    );
  }
  /** The run's error message, when it failed (or a cancel's, when the kernel kept running). */
  error: string | null = null;

  /** A block of the run ignored the interrupt: the kernel stays busy until restarted. */
  get kernelUnresponsive(): boolean {
    return this._entries.some(
      entry => entry.execution?.status === 'unresponsive'
    );
  }

  get finished(): boolean {
    return this._finalStatus !== null;
  }

  /** Steps in the order they started. */
  get entries(): readonly ITranscriptEntry[] {
    return this._entries;
  }

  /** Applies one event; returns whether it was new (replays are ignored by `seq`). */
  apply(event: RunEvent): boolean {
    if (event.run_id !== this.runId || this._applied.has(event.seq)) {
      return false;
    }
    this._applied.add(event.seq);
    switch (event.type) {
      case 'run_started':
        this.question = event.question;
        this.model = event.model;
        this.parentRunId = event.parent_run_id ?? null;
        break;
      case 'artifacts':
        for (const file of event.files) {
          const known = this._files.get(file.path);
          this._files.set(file.path, {
            ...file,
            status: known?.status ?? file.status
          });
        }
        break;
      case 'delta': {
        const entry = this._entry(event.step, kindOfTag(event.tag));
        if (entry.streaming) {
          entry.text += event.text;
        }
        break;
      }
      case 'segment': {
        const entry = this._entry(event.step, kindOfTag(event.tag));
        entry.kind = kindOfTag(event.tag);
        // A code step keeps the code of its cell (clean of fences) once there is one.
        if (!(entry.kind === 'Code' && entry.cellId !== undefined)) {
          entry.text = event.text.trim();
        }
        entry.streaming = false;
        break;
      }
      case 'cell':
        this._attachCell(event);
        break;
      case 'approval_required': {
        const entry = this._byCell.get(event.cell_id);
        if (entry) {
          entry.approvalCode = event.code;
        }
        break;
      }
      case 'execution_finished': {
        const entry = this._byCell.get(event.cell_id);
        if (entry) {
          entry.approvalCode = null;
          entry.execution = {
            status: event.status,
            executionCount: event.execution_count ?? null,
            feedback: event.feedback ?? ''
          };
          if (typeof event.code === 'string') {
            entry.text = event.code;
          }
        }
        break;
      }
      case 'run_finished':
        this._finalStatus = event.status;
        this.error = event.error ?? null;
        for (const entry of this._entries) {
          entry.streaming = false;
          entry.approvalCode = null;
        }
        break;
    }
    return true;
  }

  applyAll(events: Iterable<RunEvent>): void {
    for (const event of events) {
      this.apply(event);
    }
  }

  private _attachCell(event: ICellEvent): void {
    const provenance = event.metadata.deepanalyze;
    const kind = provenance
      ? ROLE_KINDS[provenance.role]
      : event.cell_type === 'code'
        ? 'Code'
        : 'Note';
    if (kind === undefined) {
      return;
    }
    const step = provenance?.step ?? this._nextStep();
    const entry = this._entry(step, kind);
    entry.cellId = event.cell_id;
    entry.kind = kind;
    // Code shows as it is in the cell; prose keeps the segment text it streamed as.
    if (kind === 'Code' || entry.text === '') {
      entry.text = event.source;
    }
    entry.streaming = false;
    this._byCell.set(event.cell_id, entry);
  }

  private _entry(step: number, kind: StepKind): ITranscriptEntry {
    let entry = this._byStep.get(step);
    if (!entry) {
      entry = { step, kind, text: '', streaming: true, approvalCode: null };
      this._byStep.set(step, entry);
      this._entries.push(entry);
    }
    return entry;
  }

  private _nextStep(): number {
    return Math.max(-1, ...this._byStep.keys()) + 1;
  }

  private readonly _applied = new Set<number>();
  private readonly _entries: ITranscriptEntry[] = [];
  private readonly _byStep = new Map<number, ITranscriptEntry>();
  private readonly _byCell = new Map<string, ITranscriptEntry>();
  private readonly _files = new Map<string, IArtifact>();
  private _finalStatus: FinalRunStatus | null = null;
}
