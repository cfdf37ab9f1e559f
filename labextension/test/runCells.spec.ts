/**
 * A notebook's runs as units: where a new run goes, which run is the last, and removing
 * exactly one run's cells.
 */

import { describe, expect, it } from 'vitest';

import { RunMaterializer } from '../src/materializer';
import {
  anchorBelow,
  lastRunIn,
  removeRunCells,
  runIdsIn
} from '../src/runCells';
import { cell, cellsJSON, OTHER_RUN, RUN, userNotebook } from './notebooks';
import { completedRun } from './runEvents';

describe('anchorBelow', () => {
  it('is the active cell when no run follows it', () => {
    const notebook = userNotebook();
    expect(anchorBelow(notebook, 'user-load')).toBe('user-load');
    expect(anchorBelow(notebook, null)).toBeNull();
    expect(anchorBelow(notebook, 'a-cell-deleted-meanwhile')).toBe(
      'a-cell-deleted-meanwhile'
    );
  });

  it('skips the runs right below the active cell, so a follow-up reads after them', () => {
    const notebook = userNotebook();
    const first = completedRun(RUN);
    new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(first.events);
    const second = completedRun(OTHER_RUN);
    const anchor = anchorBelow(notebook, 'user-load');
    expect(anchor).toBe(first.cellId(4));
    new RunMaterializer(notebook, {
      runId: OTHER_RUN,
      anchorCellId: anchor
    }).applyAll(second.events);

    expect(runIdsIn(notebook)).toEqual([RUN, OTHER_RUN]);
    expect(cellsJSON(notebook).map(c => c.id)).toEqual([
      'user-intro',
      'user-load',
      ...[0, 1, 2, 3, 4].map(step => first.cellId(step)),
      ...[0, 1, 2, 3, 4].map(step => second.cellId(step)),
      'user-end'
    ]);
    // From inside a run, a new run goes after the whole of it, never into it.
    expect(anchorBelow(notebook, first.cellId(1))).toBe(second.cellId(4));
  });
});

describe('removeRunCells', () => {
  it('removes exactly the cells of the named run and nothing the user wrote', () => {
    const notebook = userNotebook();
    const first = completedRun(RUN);
    const second = completedRun(OTHER_RUN);
    new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-intro'
    }).applyAll(first.events);
    new RunMaterializer(notebook, {
      runId: OTHER_RUN,
      anchorCellId: 'user-load'
    }).applyAll(second.events);
    // The user also writes a cell between the run's cells.
    notebook.insertCell(3, {
      id: 'user-middle',
      cell_type: 'markdown',
      source: 'mine'
    });
    expect(runIdsIn(notebook)).toEqual([RUN, OTHER_RUN]);

    const removed = removeRunCells(notebook, RUN);

    expect(removed).toBe(5);
    expect(cellsJSON(notebook).map(c => c.id)).toEqual([
      'user-intro',
      'user-middle',
      'user-load',
      ...[0, 1, 2, 3, 4].map(step => second.cellId(step)),
      'user-end'
    ]);
    expect(cell(notebook, 'user-load')).toEqual(
      cell(userNotebook(), 'user-load')
    );
    expect(runIdsIn(notebook)).toEqual([OTHER_RUN]);
  });

  it('finds the last run of a notebook: the one started last here, else the lowest', () => {
    const notebook = userNotebook();
    new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-end'
    }).applyAll(completedRun(RUN).events);
    new RunMaterializer(notebook, {
      runId: OTHER_RUN,
      anchorCellId: 'user-intro'
    }).applyAll(completedRun(OTHER_RUN).events);

    expect(lastRunIn(notebook, OTHER_RUN)).toBe(OTHER_RUN);
    expect(lastRunIn(notebook, 'a-run-of-another-notebook')).toBe(RUN);
    expect(lastRunIn(notebook, null)).toBe(RUN);
    expect(lastRunIn(userNotebook(), RUN)).toBeNull();
  });

  it('removes nothing for a run that has no cells', () => {
    const notebook = userNotebook();
    expect(removeRunCells(notebook, RUN)).toBe(0);
    expect(cellsJSON(notebook)).toEqual(cellsJSON(userNotebook()));
  });
});
