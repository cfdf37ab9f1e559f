/**
 * The live materializer: events → notebook cells.
 *
 * Owns the rules by which a run's events become cells of a notebook: only `cell`
 * events create cells; `output`, `execution_finished` and approvals change only the
 * cells the run created; cells are addressed by their nbformat id (the event's
 * `cell_id`), never by index; materializing the same events twice gives the same cells;
 * and a cell the user wrote is never modified or deleted. Waiting approvals are the
 * transcript's (`transcript.ts`): they change no cell.
 *
 * Must not touch the DOM or any JupyterLab widget: it works over `INotebookTarget`, a
 * small structural subset of `@jupyter/ydoc`'s `ISharedNotebook` that a notebook
 * panel's shared model satisfies as it is, and that unit tests satisfy with a plain
 * `YNotebook`.
 */

import type * as nbformat from '@jupyterlab/nbformat';
import type { PartialJSONObject, PartialJSONValue } from '@lumino/coreutils';

import type {
  ICellEvent,
  ICellProvenance,
  IExecutionFinishedEvent,
  IOutputEvent,
  RunEvent
} from './events';

/** A notebook cell as the materializer needs it. */
export interface ITargetCell {
  readonly id: string;
  readonly cell_type: string;
  getSource(): string;
  setSource(value: string): void;
  getMetadata(key: string): PartialJSONValue | undefined;
}

/**
 * A code cell as the materializer needs it.
 *
 * Outputs change only by appending an output or appending text to the last stream
 * output, never by replacing one: JupyterLab's cell model mirrors the shared model's
 * output changes into the output area the notebook renders, and that mirroring assumes
 * exactly these two kinds of change (the ones a kernel's messages make). `@jupyter/ydoc`'s
 * `YCodeCell`, what every notebook of JupyterLab 4.6 holds, implements all of this.
 */
export interface ITargetCodeCell extends ITargetCell {
  execution_count: nbformat.ExecutionCount;
  getOutputs(): nbformat.IOutput[];
  setOutputs(outputs: nbformat.IOutput[]): void;
  updateOutputs(start: number, end: number, outputs: nbformat.IOutput[]): void;
  appendStreamOutput(index: number, text: string): void;
}

/** A notebook as the materializer needs it (a subset of `ISharedNotebook`). */
export interface INotebookTarget {
  readonly cells: readonly ITargetCell[];
  insertCell(index: number, cell: nbformat.ICell): ITargetCell;
  deleteCell(index: number): void;
  /**
   * Groups changes into one update. `undoable: false` keeps the agent's edits out of
   * the user's undo history, so Ctrl+Z never interleaves with a streaming run.
   */
  transact?(f: () => void, undoable?: boolean): void;
}

export interface IMaterializerOptions {
  /** The run whose events are materialized; events of other runs are ignored. */
  runId: string;
  /**
   * Id of the cell below which the run's first cell goes (the active cell when the run
   * was started), or `null` to start at the end of the notebook.
   */
  anchorCellId: string | null;
}

function isCodeCell(cell: ITargetCell): cell is ITargetCodeCell {
  return cell.cell_type === 'code';
}

/** `metadata.deepanalyze` of a notebook cell, if an agent added it. */
export function cellProvenance(cell: ITargetCell): ICellProvenance | undefined {
  const value = cell.getMetadata('deepanalyze');
  if (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { run_id?: unknown }).run_id === 'string'
  ) {
    return value as unknown as ICellProvenance;
  }
  return undefined;
}

function textOf(value: nbformat.MultilineString): string {
  return Array.isArray(value) ? value.join('') : value;
}

/**
 * Normalizes an output for storage: multiline strings of stream outputs become one
 * string, so that merging and the shared model (which keeps stream text as one text)
 * agree.
 */
function normalizeOutput(output: nbformat.IOutput): nbformat.IOutput {
  if (output.output_type === 'stream') {
    const stream = output as nbformat.IStream;
    return { ...stream, text: textOf(stream.text) };
  }
  return output;
}

/**
 * How `output` joins `outputs`: consecutive stream outputs of the same name merge into
 * one, as Jupyter's own output area does, so a cell shows what the user would have seen
 * running it by hand. Anything else is appended.
 */
export type OutputPlacement =
  | { kind: 'append'; output: nbformat.IOutput }
  | { kind: 'stream-text'; index: number; text: string };

export function placeOutput(
  outputs: readonly nbformat.IOutput[],
  output: nbformat.IOutput
): OutputPlacement {
  const next = normalizeOutput(output);
  const last = outputs[outputs.length - 1];
  if (
    next.output_type === 'stream' &&
    last !== undefined &&
    last.output_type === 'stream' &&
    (last as nbformat.IStream).name === (next as nbformat.IStream).name
  ) {
    return {
      kind: 'stream-text',
      index: outputs.length - 1,
      text: textOf((next as nbformat.IStream).text)
    };
  }
  return { kind: 'append', output: next };
}

/** Index of the cell with id `cellId` in `target`, or -1. */
export function indexOfCell(target: INotebookTarget, cellId: string): number {
  return target.cells.findIndex(cell => cell.id === cellId);
}

/** Ids of the runs that have cells in `target`, in the order their first cells appear. */
export function runIdsIn(target: INotebookTarget): string[] {
  const ids: string[] = [];
  for (const cell of target.cells) {
    const runId = cellProvenance(cell)?.run_id;
    if (runId !== undefined && !ids.includes(runId)) {
      ids.push(runId);
    }
  }
  return ids;
}

/**
 * The run "Remove cells of last run" means in `target`: the run started last from this
 * browser if it has cells there, else the run whose cells start lowest in the notebook.
 */
export function lastRunIn(
  target: INotebookTarget,
  lastStartedRunId: string | null
): string | null {
  const runIds = runIdsIn(target);
  if (lastStartedRunId !== null && runIds.includes(lastStartedRunId)) {
    return lastStartedRunId;
  }
  return runIds[runIds.length - 1] ?? null;
}

function transact(target: INotebookTarget, f: () => void): void {
  if (target.transact) {
    target.transact(f, false);
  } else {
    f();
  }
}

/**
 * Deletes the cells of one run: exactly the cells whose `metadata.deepanalyze.run_id`
 * is `runId`. Returns how many were deleted.
 */
export function removeRunCells(target: INotebookTarget, runId: string): number {
  const indices: number[] = [];
  target.cells.forEach((cell, index) => {
    if (cellProvenance(cell)?.run_id === runId) {
      indices.push(index);
    }
  });
  // Back to front: a shared notebook updates its cell list only when the transaction
  // ends, so indices computed up front must stay valid while deleting.
  transact(target, () => {
    for (const index of indices.reverse()) {
      target.deleteCell(index);
    }
  });
  return indices.length;
}

/**
 * Materializes one run's events into one notebook.
 *
 * Feed it events in `seq` order with `apply`; an event already applied (same `seq`) is
 * ignored, so a websocket replay that overlaps what was seen is harmless. A fresh
 * materializer replaying a run onto a notebook that already holds the run's cells (after
 * a page reload, or "Insert as cells" pressed twice) adopts those cells by id and
 * rebuilds their outputs from the events instead of adding to them.
 */
export class RunMaterializer {
  constructor(
    private readonly target: INotebookTarget,
    options: IMaterializerOptions
  ) {
    this.runId = options.runId;
    this._anchorCellId = options.anchorCellId;
  }

  readonly runId: string;

  /**
   * Ids of cells named by the run that belong to someone else (a cell with the same id
   * but without this run's metadata). They are left untouched.
   */
  get conflicts(): string[] {
    return [...this._conflicts];
  }

  /** The run's cell with id `cellId`, if it is still in the notebook. */
  findCell(cellId: string): ITargetCell | undefined {
    if (!this._ownCells.has(cellId)) {
      return undefined;
    }
    return this.target.cells.find(cell => cell.id === cellId);
  }

  applyAll(events: Iterable<RunEvent>): void {
    for (const event of events) {
      this.apply(event);
    }
  }

  /** Applies one event; returns whether it was new. */
  apply(event: RunEvent): boolean {
    if (event.run_id !== this.runId || this._applied.has(event.seq)) {
      return false;
    }
    this._applied.add(event.seq);
    switch (event.type) {
      case 'cell':
        transact(this.target, () => this._createCell(event));
        break;
      case 'output':
        transact(this.target, () => this._appendOutput(event));
        break;
      case 'execution_finished':
        transact(this.target, () => this._finishExecution(event));
        break;
      default:
        // run_started, delta and segment belong to chat views, never to cells, and
        // so do approval_required (its cell already exists, un-run) and run_finished
        // (a run that ends early says so in a `status` cell event of its own).
        break;
    }
    return true;
  }

  private _createCell(event: ICellEvent): void {
    const existing = this.target.cells.find(cell => cell.id === event.cell_id);
    if (existing !== undefined) {
      if (cellProvenance(existing)?.run_id !== this.runId) {
        // Somebody else's cell has this id: never touch it, and ignore the events
        // that address it.
        this._conflicts.add(event.cell_id);
        return;
      }
      // Replay onto cells materialized earlier: adopt the cell. Its outputs and count
      // are rebuilt by the events that follow, so they start empty, as they did the
      // first time; the source stays as the notebook has it.
      this._ownCells.add(event.cell_id);
      this._lastCellId = event.cell_id;
      if (isCodeCell(existing)) {
        existing.setOutputs([]);
        existing.execution_count = null;
      }
      return;
    }

    const provenance = event.metadata.deepanalyze;
    const metadata: PartialJSONObject = {
      ...(event.metadata as PartialJSONObject),
      deepanalyze: {
        step: provenance?.step ?? -1,
        role:
          provenance?.role ?? (event.cell_type === 'code' ? 'code' : 'note'),
        ...provenance,
        // The run id is what makes a cell removable as part of its run and adoptable
        // on replay, so it is always the run's, whatever the event said.
        run_id: this.runId
      }
    };
    const cell =
      event.cell_type === 'code'
        ? ({
            id: event.cell_id,
            cell_type: 'code',
            source: event.source,
            metadata,
            outputs: [],
            execution_count: null
          } as nbformat.ICodeCell)
        : ({
            id: event.cell_id,
            cell_type: event.cell_type,
            source: event.source,
            metadata
          } as nbformat.IMarkdownCell | nbformat.IRawCell);
    this.target.insertCell(this._insertionIndex(), cell);
    this._ownCells.add(event.cell_id);
    this._lastCellId = event.cell_id;
  }

  /**
   * Below the run's latest cell; the first cell below the anchor. When the user deleted
   * those, the end of the notebook.
   */
  private _insertionIndex(): number {
    for (const id of [this._lastCellId, this._anchorCellId]) {
      if (id !== null) {
        const index = indexOfCell(this.target, id);
        if (index >= 0) {
          return index + 1;
        }
      }
    }
    return this.target.cells.length;
  }

  private _appendOutput(event: IOutputEvent): void {
    const cell = this.findCell(event.cell_id);
    if (cell === undefined || !isCodeCell(cell)) {
      return;
    }
    const outputs = cell.getOutputs();
    const placement = placeOutput(outputs, event.output);
    if (placement.kind === 'stream-text') {
      cell.appendStreamOutput(placement.index, placement.text);
    } else {
      cell.updateOutputs(outputs.length, outputs.length, [placement.output]);
    }
  }

  private _finishExecution(event: IExecutionFinishedEvent): void {
    const cell = this.findCell(event.cell_id);
    if (cell === undefined) {
      return;
    }
    // `code` is what actually ran (the user may have edited the cell before Run):
    // the cell must show the code its outputs came from.
    if (typeof event.code === 'string' && event.code !== cell.getSource()) {
      cell.setSource(event.code);
    }
    if (isCodeCell(cell) && typeof event.execution_count === 'number') {
      cell.execution_count = event.execution_count;
    }
  }

  private readonly _applied = new Set<number>();
  private readonly _ownCells = new Set<string>();
  private readonly _conflicts = new Set<string>();
  private readonly _anchorCellId: string | null;
  private _lastCellId: string | null = null;
}
