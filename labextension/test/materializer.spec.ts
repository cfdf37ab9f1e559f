/**
 * The materializer against a real shared notebook model (`YNotebook`, the model a
 * JupyterLab notebook panel edits), fed event streams shaped like the server's: which
 * cells a run creates, where, and what replays, approvals and the user's own cells do.
 */

import type { ISharedCodeCell } from '@jupyter/ydoc';
import { describe, expect, it } from 'vitest';

import { RunMaterializer } from '../src/materializer';
import { RunTranscript } from '../src/transcript';
import {
  cell,
  cellsJSON,
  OTHER_RUN,
  reload,
  RUN,
  userNotebook
} from './notebooks';
import { completedRun, RunEvents } from './runEvents';

describe('RunMaterializer', () => {
  it('creates the cells of a run below the anchor cell, in order, with provenance', () => {
    const notebook = userNotebook();
    const run = completedRun(RUN);
    const materializer = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    });

    materializer.applyAll(run.events);

    expect(cellsJSON(notebook).map(c => c.id)).toEqual([
      'user-intro',
      'user-load',
      run.cellId(0),
      run.cellId(1),
      run.cellId(2),
      run.cellId(3),
      run.cellId(4),
      'user-end'
    ]);
    expect(cell(notebook, run.cellId(0))).toMatchObject({
      cell_type: 'markdown',
      source: '# What is in df?',
      metadata: { deepanalyze: { run_id: RUN, step: 0, role: 'title' } }
    });
    expect(cell(notebook, run.cellId(2))).toMatchObject({
      cell_type: 'code',
      source: 'print(df.shape)',
      execution_count: 1,
      outputs: [
        { output_type: 'stream', name: 'stdout', text: '(3, 2)\n' },
        { output_type: 'execute_result', data: { 'text/plain': '3' } }
      ],
      metadata: { deepanalyze: { run_id: RUN, step: 2, role: 'code' } }
    });
    expect(cell(notebook, run.cellId(4))).toMatchObject({
      cell_type: 'markdown',
      metadata: { deepanalyze: { role: 'report' } }
    });
  });

  it('inserts no cell for a run that fails before the model says anything', () => {
    const notebook = userNotebook();
    const run = new RunEvents(RUN)
      .started()
      .markdown(0, 'title', '# What is in df?')
      .markdown(1, 'status', '**Run failed:** No model configured')
      .finished('failed', 'No model configured');
    const materializer = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    });

    materializer.applyAll(run.events);

    expect(cellsJSON(notebook)).toEqual(cellsJSON(userNotebook()));
    expect(materializer.created).toBe(0);
  });

  it("inserts the title once the model's first words arrive", () => {
    const notebook = userNotebook();
    const run = new RunEvents(RUN)
      .started()
      .markdown(0, 'title', '# What is in df?');
    const materializer = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    });
    materializer.applyAll(run.events);
    expect(materializer.created).toBe(0);

    run.push({ type: 'delta', step: 1, text: 'I will' });
    materializer.applyAll(run.events);

    expect(cellsJSON(notebook).map(c => c.id)).toEqual([
      'user-intro',
      'user-load',
      run.cellId(0),
      'user-end'
    ]);
  });

  it('creates cells only from cell events', () => {
    const notebook = userNotebook();
    const run = new RunEvents(RUN).started();
    run.push({ type: 'delta', step: 0, text: 'I will' });
    run.push({
      type: 'segment',
      step: 0,
      tag: 'Analyze',
      text: 'I will look.'
    });
    run.stream(0, 'no cell for this\n').executed(0, 3);

    new RunMaterializer(notebook, { runId: RUN, anchorCellId: null }).applyAll(
      run.events
    );

    expect(cellsJSON(notebook)).toEqual(cellsJSON(userNotebook()));
  });

  it('makes a markdown cell of a cell event of any type but code, as NotebookBuilder does', () => {
    const notebook = userNotebook();
    const run = new RunEvents(RUN).started();
    run.push({
      type: 'cell',
      cell_id: run.cellId(0),
      // Not a type the agent writes; a newer server might.
      cell_type: 'raw' as 'markdown',
      source: 'plain text',
      metadata: { deepanalyze: { run_id: RUN, step: 0, role: 'note' } }
    });

    new RunMaterializer(notebook, { runId: RUN, anchorCellId: null }).applyAll(
      run.events
    );

    expect(cell(notebook, run.cellId(0))).toMatchObject({
      cell_type: 'markdown',
      source: 'plain text'
    });
  });

  it('counts the cells it created and those it found already there', () => {
    const notebook = userNotebook();
    const run = completedRun(RUN);
    const first = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: null
    });
    first.applyAll(run.events);
    expect([first.created, first.adopted]).toEqual([5, 0]);

    const again = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: null
    });
    again.applyAll(run.events);
    expect([again.created, again.adopted]).toEqual([0, 5]);
  });

  it('puts the run at the end of the notebook without an anchor, or when the anchor is gone', () => {
    for (const anchorCellId of [null, 'deleted-by-the-user']) {
      const notebook = userNotebook();
      const run = completedRun(RUN);
      new RunMaterializer(notebook, { runId: RUN, anchorCellId }).applyAll(
        run.events
      );
      const ids = cellsJSON(notebook).map(c => c.id);
      expect(ids.slice(0, 3)).toEqual(['user-intro', 'user-load', 'user-end']);
      expect(ids.slice(3)).toEqual(
        [0, 1, 2, 3, 4].map(step => run.cellId(step))
      );
    }
  });

  it('keeps inserting below its own latest cell while the user adds cells elsewhere', () => {
    const notebook = userNotebook();
    const run = new RunEvents(RUN).started().markdown(0, 'title', '# Q');
    run.push({ type: 'delta', step: 1, text: 'Pl' }); // the model has spoken
    const materializer = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-intro'
    });
    materializer.applyAll(run.events);
    // The user types a new cell right below the anchor, above the run's cells...
    notebook.insertCell(1, {
      id: 'user-new',
      cell_type: 'code',
      source: 'x = 1'
    });
    // ...and the run goes on.
    run.markdown(1, 'analyze', 'Plan').code(2, 'df.head()');
    materializer.applyAll(run.events);

    expect(cellsJSON(notebook).map(c => c.id)).toEqual([
      'user-intro',
      'user-new',
      run.cellId(0),
      run.cellId(1),
      run.cellId(2),
      'user-load',
      'user-end'
    ]);
  });

  it('gives the same cells when the same events are applied twice', () => {
    const notebook = userNotebook();
    const run = completedRun(RUN);
    const materializer = new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    });
    materializer.applyAll(run.events);
    const once = cellsJSON(notebook);

    materializer.applyAll(run.events);

    expect(cellsJSON(notebook)).toEqual(once);
  });

  it('gives the same cells when a fresh materializer replays the run onto a reloaded notebook', () => {
    const notebook = userNotebook();
    const run = completedRun(RUN);
    new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);
    const once = cellsJSON(notebook);

    // A page reload: the notebook comes back from its saved JSON, the materializer
    // starts empty and gets the whole event log again.
    const reloaded = reload(notebook);
    new RunMaterializer(reloaded, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    expect(cellsJSON(reloaded)).toEqual(once);
  });

  it('continues a run from where a reloaded notebook left it', () => {
    const notebook = userNotebook();
    const run = completedRun(RUN);
    const cut = run.events.findIndex(e => e.type === 'output');
    new RunMaterializer(notebook, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events.slice(0, cut + 1));
    const reloaded = reload(notebook);

    new RunMaterializer(reloaded, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    const expected = userNotebook();
    new RunMaterializer(expected, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);
    expect(cellsJSON(reloaded)).toEqual(cellsJSON(expected));
  });

  it('ignores the events of other runs', () => {
    const notebook = userNotebook();
    const other = completedRun(OTHER_RUN);
    new RunMaterializer(notebook, { runId: RUN, anchorCellId: null }).applyAll(
      other.events
    );
    expect(cellsJSON(notebook)).toEqual(cellsJSON(userNotebook()));
  });

  describe('user cells', () => {
    it('are never modified by a run, even one addressing their id', () => {
      const notebook = userNotebook();
      const before = cellsJSON(notebook);
      const run = new RunEvents(RUN).started();
      // A hostile or buggy stream naming the user's cell.
      run.push({
        type: 'cell',
        cell_id: 'user-load',
        cell_type: 'code',
        source: 'import os; os.remove("data.csv")',
        metadata: { deepanalyze: { run_id: RUN, step: 0, role: 'code' } }
      });
      run.push({
        type: 'output',
        cell_id: 'user-load',
        output: { output_type: 'stream', name: 'stdout', text: 'x\n' }
      });
      run.push({
        type: 'execution_finished',
        cell_id: 'user-load',
        status: 'ok',
        execution_count: 99,
        code: 'print("replaced")'
      });
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: 'user-intro'
      });

      materializer.applyAll(run.events);

      expect(cellsJSON(notebook)).toEqual(before);
      expect(materializer.conflicts).toEqual(['user-load']);
    });

    it('keep their content and order around a run', () => {
      const notebook = userNotebook();
      const before = cellsJSON(notebook);
      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: 'user-intro'
      }).applyAll(completedRun(RUN).events);

      const userCells = cellsJSON(notebook).filter(
        c => !c.metadata.deepanalyze
      );
      expect(userCells).toEqual(before);
    });
  });

  describe('approval', () => {
    it('leaves the code cell un-run and pending until the user decides', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'df.describe()')
        .approval(0, 'df.describe()');
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      });

      materializer.applyAll(run.events);

      expect(cell(notebook, run.cellId(0))).toMatchObject({
        source: 'df.describe()',
        outputs: [],
        execution_count: null
      });
      const transcript = new RunTranscript(RUN);
      transcript.applyAll(run.events);
      expect(transcript.pendingApprovals).toEqual([
        { cellId: run.cellId(0), code: 'df.describe()' }
      ]);
      expect(transcript.status).toBe('waiting_approval');
    });

    it('shows the code that actually ran after the user edited it', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'df.describe()')
        .approval(0, 'df.describe()');
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      });
      materializer.applyAll(run.events);
      // The user edits the cell in the notebook, then presses Run; the server runs the
      // edited code and reports it back.
      const shared = notebook.cells.find(c => c.id === run.cellId(0))!;
      shared.setSource('df.describe(include="all")');
      run
        .stream(0, 'stats\n')
        .executed(0, 4, 'ok', 'df.describe(include="all")');

      materializer.applyAll(run.events);

      expect(cell(notebook, run.cellId(0))).toMatchObject({
        source: 'df.describe(include="all")',
        execution_count: 4,
        outputs: [{ output_type: 'stream', name: 'stdout', text: 'stats\n' }]
      });
    });

    it('updates the source to the code that ran even when the cell was not edited here', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'df.head()')
        .approval(0, 'df.head()')
        .executed(0, 2, 'ok', 'df.head(10)');

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(cell(notebook, run.cellId(0)).source).toBe('df.head(10)');
    });

    it('marks a skipped cell and clears the approval', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'rm -rf /')
        .approval(0, 'rm -rf /')
        .executed(0, null, 'skipped');
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      });

      materializer.applyAll(run.events);

      expect(
        (notebook.cells.find(c => c.id === run.cellId(0)) as ISharedCodeCell)
          .execution_count
      ).toBeNull();
    });
  });
});
