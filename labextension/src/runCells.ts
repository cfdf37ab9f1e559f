/**
 * A notebook as runs write into it, and a run's cells as a unit.
 *
 * Owns `INotebookTarget`, the small structural subset of `@jupyter/ydoc`'s
 * `ISharedNotebook` that runs are materialized into (a notebook panel's shared model
 * satisfies it as it is; previews and unit tests use a plain `YNotebook`), how an
 * agent's cell is told from the user's (`metadata.deepanalyze`), and what a notebook's
 * runs are as units: which runs it holds, where a new run goes (`anchorBelow`), which
 * one is the last (`lastRunIn`), and removing exactly one run's cells.
 *
 * Must not touch the DOM or any JupyterLab widget, nor modify a cell the user wrote.
 */

import type * as nbformat from '@jupyterlab/nbformat';
import type { PartialJSONValue } from '@lumino/coreutils';

import type { ICellProvenance } from './events';

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
 * Outputs change only by appending an output, appending text to the last stream output,
 * or removing the outputs from some index to the end, each in a transaction of its own:
 * JupyterLab's cell model mirrors the shared model's output changes into the output
 * area the notebook renders, and that mirroring applies removals where they are but
 * every insertion as an append (merging a stream into a preceding one). So an output is
 * replaced by removing it and everything after it, then appending them again.
 * `@jupyter/ydoc`'s `YCodeCell`, what every notebook of JupyterLab 4.6 holds, implements
 * all of this.
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

export function isCodeCell(cell: ITargetCell): cell is ITargetCodeCell {
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
 * The anchor of a new run started with `activeCellId` active: that cell, or, when
 * earlier runs' cells follow it, the last of those. A follow-up question asked without
 * moving the cursor then reads below the run it follows up on, not above it, and no
 * run is split by another. Null when there is no active cell (the end of the notebook).
 */
export function anchorBelow(
  target: INotebookTarget,
  activeCellId: string | null
): string | null {
  if (activeCellId === null) {
    return null;
  }
  let index = indexOfCell(target, activeCellId);
  if (index < 0) {
    return activeCellId;
  }
  while (
    index + 1 < target.cells.length &&
    cellProvenance(target.cells[index + 1]) !== undefined
  ) {
    index += 1;
  }
  return target.cells[index].id;
}

/**
 * Id of the last cell of run `runId` in `target`, or null when it has none there: a
 * follow-up's cells go below it.
 */
export function lastCellOfRun(
  target: INotebookTarget,
  runId: string
): string | null {
  let last: string | null = null;
  for (const cell of target.cells) {
    if (cellProvenance(cell)?.run_id === runId) {
      last = cell.id;
    }
  }
  return last;
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

/** Runs `f` as one change that stays out of the user's undo history. */
export function transact(target: INotebookTarget, f: () => void): void {
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
