/**
 * The live materializer: events → notebook cells.
 *
 * Owns the rules by which a run's events become cells of a notebook, the same rules as
 * `notebook.NotebookBuilder` of the Python package (the golden test holds both to one
 * expected notebook): only `cell` events create cells (code cells, and markdown for any
 * other type); `output`, `clear_output`, `execution_finished` and approvals change only
 * the cells the run created; consecutive stream outputs merge; `clear_output` clears a
 * cell now or, with `wait`, before its next appended output; an `update` output replaces
 * every output of the run shown under its `display_id`; cells are addressed by their
 * nbformat id (the event's `cell_id`), never by index; materializing the same events
 * twice gives the same cells; and a cell the user wrote is never modified or deleted.
 * Waiting approvals are the transcript's (`transcript.ts`): they change no cell.
 *
 * Must not touch the DOM or any JupyterLab widget: it works over `INotebookTarget`
 * (`runCells.ts`), which a notebook panel's shared model satisfies as it is, and
 * previews and unit tests with a plain `YNotebook`.
 */

import { YNotebook } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';
import type { PartialJSONObject } from '@lumino/coreutils';

import type {
  ICellEvent,
  IClearOutputEvent,
  IExecutionFinishedEvent,
  IOutputEvent,
  IRunBundle,
  RunEvent
} from './events';
import {
  cellProvenance,
  indexOfCell,
  type INotebookTarget,
  isCodeCell,
  type ITargetCell,
  type ITargetCodeCell,
  transact
} from './runCells';

export interface IMaterializerOptions {
  /** The run whose events are materialized; events of other runs are ignored. */
  runId: string;
  /**
   * Id of the cell below which the run's first cell goes (the active cell when the run
   * was started), or `null` to start at the end of the notebook.
   */
  anchorCellId: string | null;
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
        this._cellEvent(event);
        break;
      case 'delta':
      case 'segment':
        this._modelSpoke();
        break;
      case 'output':
        if (event.update) {
          this._updateDisplay(event);
        } else {
          this._appendOutput(event);
        }
        break;
      case 'clear_output':
        this._clearOutput(event);
        break;
      case 'execution_finished':
        transact(this.target, () => this._finishExecution(event));
        break;
      default:
        // run_started belongs to chat views, never to cells (so do delta and segment,
        // which only say the model has spoken), and
        // so do approval_required (its cell already exists, un-run), artifacts (the
        // report cell links the files it wants to show) and run_finished (a run that
        // ends early says so in a `status` cell event of its own).
        break;
    }
    return true;
  }

  /** How many cells this materializer inserted into the notebook. */
  get created(): number {
    return this._created;
  }

  /** How many of the run's cells it found in the notebook already and adopted. */
  get adopted(): number {
    return this._ownCells.size - this._created;
  }

  /**
   * A run's title waits for the model's first words: a run that fails before them (no
   * model, a bad key) or is cancelled then leaves no cell in the notebook; the sidebar
   * says why. Its closing `status` cell is then dropped with the title.
   */
  private _cellEvent(event: ICellEvent): void {
    const role = event.metadata.deepanalyze?.role;
    if (!this._spoke && role === 'title') {
      this._heldTitle = event;
      return;
    }
    if (!this._spoke && role === 'status') {
      this._heldTitle = null;
      return;
    }
    this._modelSpoke();
    transact(this.target, () => this._createCell(event));
  }

  private _modelSpoke(): void {
    this._spoke = true;
    const title = this._heldTitle;
    if (title !== null) {
      this._heldTitle = null;
      transact(this.target, () => this._createCell(title));
    }
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
      this._displayIds.delete(event.cell_id);
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
    // Any type but code becomes markdown, as `NotebookBuilder` makes it.
    const cell: nbformat.ICodeCell | nbformat.IMarkdownCell =
      event.cell_type === 'code'
        ? {
            id: event.cell_id,
            cell_type: 'code',
            source: event.source,
            metadata,
            outputs: [],
            execution_count: null
          }
        : {
            id: event.cell_id,
            cell_type: 'markdown',
            source: event.source,
            metadata
          };
    this.target.insertCell(this._insertionIndex(), cell);
    this._ownCells.add(event.cell_id);
    this._lastCellId = event.cell_id;
    this._created += 1;
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

  /** The run's code cell with id `cellId`, if it is still in the notebook. */
  private _codeCell(cellId: string): ITargetCodeCell | undefined {
    const cell = this.findCell(cellId);
    return cell !== undefined && isCodeCell(cell) ? cell : undefined;
  }

  /**
   * The display ids of `cell`'s outputs, index by index (null for an output without
   * one). Outputs the user cleared in the notebook are forgotten here too.
   */
  private _displayIdsOf(cell: ITargetCodeCell): (string | null)[] {
    const count = cell.getOutputs().length;
    let ids = this._displayIds.get(cell.id);
    if (ids === undefined) {
      ids = [];
      this._displayIds.set(cell.id, ids);
    }
    ids.length = Math.min(ids.length, count);
    while (ids.length < count) {
      ids.push(null);
    }
    return ids;
  }

  private _appendOutput(event: IOutputEvent): void {
    const cell = this._codeCell(event.cell_id);
    if (cell === undefined) {
      return;
    }
    if (this._clearPending.delete(cell.id)) {
      // Its own transaction: an append in the same one could be mirrored first.
      transact(this.target, () => this._clear(cell));
    }
    transact(this.target, () => {
      const ids = this._displayIdsOf(cell);
      const outputs = cell.getOutputs();
      const placement = placeOutput(outputs, event.output);
      if (placement.kind === 'stream-text') {
        cell.appendStreamOutput(placement.index, placement.text);
      } else {
        cell.updateOutputs(outputs.length, outputs.length, [placement.output]);
        ids.push(event.display_id ?? null);
      }
    });
  }

  private _clearOutput(event: IClearOutputEvent): void {
    const cell = this._codeCell(event.cell_id);
    if (cell === undefined) {
      return;
    }
    if (event.wait) {
      this._clearPending.add(cell.id);
    } else {
      this._clearPending.delete(cell.id);
      transact(this.target, () => this._clear(cell));
    }
  }

  private _clear(cell: ITargetCodeCell): void {
    cell.updateOutputs(0, cell.getOutputs().length, []);
    this._displayIds.set(cell.id, []);
  }

  /**
   * `update_display_data`: every output of the run shown under the event's display id,
   * in whatever cell, becomes the event's output. Nothing is appended, and a pending
   * `clear_output(wait=True)` waits on.
   */
  private _updateDisplay(event: IOutputEvent): void {
    const displayId = event.display_id;
    if (!displayId) {
      return;
    }
    const replacement = normalizeOutput(event.output);
    for (const cellId of this._displayIds.keys()) {
      const cell = this._codeCell(cellId);
      if (cell === undefined) {
        continue;
      }
      const ids = this._displayIdsOf(cell);
      const first = ids.indexOf(displayId);
      if (first < 0) {
        continue;
      }
      const outputs = cell.getOutputs();
      const tail = outputs
        .slice(first)
        .map((output, offset) =>
          ids[first + offset] === displayId ? replacement : output
        );
      // Removed, then appended again: see `ITargetCodeCell`.
      transact(this.target, () =>
        cell.updateOutputs(first, outputs.length, [])
      );
      transact(this.target, () => cell.updateOutputs(first, first, tail));
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
  /** Per cell id, the display id of each output (see `_displayIdsOf`). */
  private readonly _displayIds = new Map<string, (string | null)[]>();
  /** Cells whose outputs a `clear_output(wait=True)` clears at their next output. */
  private readonly _clearPending = new Set<string>();
  private _created = 0;
  private _spoke = false;
  private _heldTitle: ICellEvent | null = null;
  private readonly _conflicts = new Set<string>();
  private readonly _anchorCellId: string | null;
  private _lastCellId: string | null = null;
}

/**
 * The cells `bundle` (the `%analyze` magic's output) materializes into, computed on an
 * empty in-memory notebook: what the MIME renderer previews and "Insert as cells" adds.
 */
export function previewCells(bundle: IRunBundle): ITargetCell[] {
  const notebook = new YNotebook();
  notebook.fromJSON({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: []
  });
  new RunMaterializer(notebook, {
    runId: bundle.run_id,
    anchorCellId: null
  }).applyAll(bundle.events);
  return [...notebook.cells];
}
