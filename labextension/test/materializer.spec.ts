/**
 * The materializer against a real shared notebook model (`YNotebook`, the model a
 * JupyterLab notebook panel edits), fed event streams shaped like the server's.
 */

import { YNotebook, type ISharedCodeCell } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';
import { describe, expect, it } from 'vitest';

import {
  anchorBelow,
  lastRunIn,
  placeOutput,
  removeRunCells,
  runIdsIn,
  RunMaterializer
} from '../src/materializer';
import { RunTranscript } from '../src/transcript';
import { completedRun, displayData, RunEvents } from './runEvents';

const RUN = '0123456789abcdef0123456789abcdef';
const OTHER_RUN = 'fedcba9876543210fedcba9876543210';

/** A notebook the user wrote: a markdown cell and a code cell with an output. */
function userNotebook(): YNotebook {
  return openNotebook({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3' } },
    cells: [
      {
        id: 'user-intro',
        cell_type: 'markdown',
        source: '# My analysis',
        metadata: {}
      },
      {
        id: 'user-load',
        cell_type: 'code',
        source: 'df = make_df()',
        metadata: { tags: ['setup'] },
        outputs: [{ output_type: 'stream', name: 'stdout', text: 'loaded\n' }],
        execution_count: 7
      },
      {
        id: 'user-end',
        cell_type: 'markdown',
        source: 'The end.',
        metadata: {}
      }
    ]
  });
}

/** A shared notebook model holding `content`, as JupyterLab makes when opening a file. */
function openNotebook(content: nbformat.INotebookContent): YNotebook {
  const notebook = new YNotebook();
  notebook.fromJSON(JSON.parse(JSON.stringify(content)));
  return notebook;
}

/** What a page reload gives: the notebook read back from its saved `.ipynb` JSON. */
function reload(notebook: YNotebook): YNotebook {
  return openNotebook(notebook.toJSON());
}

function cellsJSON(notebook: YNotebook): nbformat.ICell[] {
  return notebook.toJSON().cells as nbformat.ICell[];
}

function cell(notebook: YNotebook, id: string): nbformat.ICell {
  const found = cellsJSON(notebook).find(c => c.id === id);
  if (found === undefined) {
    throw new Error(`no cell ${id}`);
  }
  return found;
}

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

  describe('outputs', () => {
    it('merges consecutive stream outputs of the same name', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'for i in range(3): print(i)')
        .stream(0, '0\n')
        .stream(0, '1\n')
        .stream(0, 'warn\n', 'stderr')
        .stream(0, '2\n')
        .stream(0, '3\n')
        .output(0, {
          output_type: 'display_data',
          data: { 'text/plain': '<Figure>' },
          metadata: {}
        })
        .stream(0, '4\n');
      run.push({
        type: 'output',
        cell_id: run.cellId(0),
        // nbformat allows multiline strings as lists of lines.
        output: { output_type: 'stream', name: 'stdout', text: ['5\n', '6\n'] }
      });

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(
        (cell(notebook, run.cellId(0)) as nbformat.ICodeCell).outputs
      ).toEqual([
        { output_type: 'stream', name: 'stdout', text: '0\n1\n' },
        { output_type: 'stream', name: 'stderr', text: 'warn\n' },
        { output_type: 'stream', name: 'stdout', text: '2\n3\n' },
        {
          output_type: 'display_data',
          data: { 'text/plain': '<Figure>' },
          metadata: {}
        },
        { output_type: 'stream', name: 'stdout', text: '4\n5\n6\n' }
      ]);
    });

    it('placeOutput appends what does not merge and merges what does', () => {
      const out: nbformat.IOutput[] = [
        { output_type: 'stream', name: 'stdout', text: ['a\n', 'b'] }
      ];
      expect(
        placeOutput(out, {
          output_type: 'stream',
          name: 'stdout',
          text: ['c', '\n']
        })
      ).toEqual({ kind: 'stream-text', index: 0, text: 'c\n' });
      expect(
        placeOutput(out, {
          output_type: 'stream',
          name: 'stderr',
          text: ['c\n']
        })
      ).toEqual({
        kind: 'append',
        output: { output_type: 'stream', name: 'stderr', text: 'c\n' }
      });
      expect(
        placeOutput([], {
          output_type: 'error',
          ename: 'E',
          evalue: 'v',
          traceback: []
        })
      ).toMatchObject({ kind: 'append' });
    });
  });

  describe('clear_output', () => {
    function outputs(notebook: YNotebook, id: string): nbformat.IOutput[] {
      return (cell(notebook, id) as nbformat.ICodeCell).outputs;
    }

    it('clears the cell at once, and what follows starts afresh', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'progress()')
        .stream(0, 'step 1\n')
        .display(0, 'd1', 'chart 1')
        .clearOutput(0)
        .stream(0, 'step 2\n');

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'step 2\n' }
      ]);
      expect(outputs(notebook, 'user-load')).toHaveLength(1);
    });

    it('with wait, keeps the outputs until the next output replaces them', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'for i in range(3): clear_output(wait=True); print(i)')
        .stream(0, '0\n')
        .clearOutput(0, true);
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      });
      materializer.applyAll(run.events);
      // Nothing flickers away: the old output stays until there is a new one.
      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: '0\n' }
      ]);

      run
        .stream(0, '1\n')
        .clearOutput(0, true)
        .stream(0, '2\n')
        .clearOutput(0, true)
        .executed(0, 5);
      materializer.applyAll(run.events);

      // The last wait found no output after it: the last output stays.
      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: '2\n' }
      ]);
    });

    it('clears only the cell it names', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'print("kept")')
        .stream(0, 'kept\n')
        .executed(0, 1)
        .code(1, 'clear_output()')
        .stream(1, 'gone\n')
        .clearOutput(1);

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'kept\n' }
      ]);
      expect(outputs(notebook, run.cellId(1))).toEqual([]);
    });
  });

  describe('display ids', () => {
    function outputs(notebook: YNotebook, id: string): nbformat.IOutput[] {
      return (cell(notebook, id) as nbformat.ICodeCell).outputs;
    }

    it('an update replaces the displayed output in place, and appends nothing', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'h = display("0%", display_id=True)')
        .stream(0, 'before\n')
        .display(0, 'p', '0%')
        .stream(0, 'after\n')
        .updateDisplay(0, 'p', '50%')
        .updateDisplay(0, 'p', '100%');

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'before\n' },
        displayData('100%'),
        { output_type: 'stream', name: 'stdout', text: 'after\n' }
      ]);
    });

    it('an update replaces every output of the run with that id, in any cell', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'h = display("v1", display_id="shared"); display("x")')
        .display(0, 'shared', 'v1')
        .display(0, 'other', 'x')
        .display(0, 'shared', 'v1')
        .executed(0, 1)
        .code(1, 'h.update("v2")')
        .display(1, 'shared', 'v1')
        .updateDisplay(1, 'shared', 'v2')
        .executed(1, 2);

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(outputs(notebook, run.cellId(0))).toEqual([
        displayData('v2'),
        displayData('x'),
        displayData('v2')
      ]);
      expect(outputs(notebook, run.cellId(1))).toEqual([displayData('v2')]);
    });

    it('an update of an id no output carries, or one cleared away, changes nothing', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'display')
        .display(0, 'p', 'first')
        .clearOutput(0)
        .stream(0, 'text\n')
        .updateDisplay(0, 'p', 'second')
        .updateDisplay(0, 'never-shown', 'third');

      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'text\n' }
      ]);
    });

    it('an update leaves a pending clear(wait) for the next appended output', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'progress')
        .display(0, 'p', '0%')
        .clearOutput(0, true)
        .updateDisplay(0, 'p', '50%');
      const materializer = new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      });
      materializer.applyAll(run.events);
      expect(outputs(notebook, run.cellId(0))).toEqual([displayData('50%')]);

      run.stream(0, 'done\n');
      materializer.applyAll(run.events);
      expect(outputs(notebook, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'done\n' }
      ]);
    });

    it('gives the same outputs when a fresh materializer replays the run onto a reloaded notebook', () => {
      const notebook = userNotebook();
      const run = new RunEvents(RUN)
        .started()
        .code(0, 'progress')
        .display(0, 'p', '0%')
        .stream(0, 'working\n')
        .updateDisplay(0, 'p', '100%')
        .clearOutput(0, true)
        .stream(0, 'done\n')
        .executed(0, 3);
      new RunMaterializer(notebook, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);
      const once = cellsJSON(notebook);

      const reloaded = reload(notebook);
      new RunMaterializer(reloaded, {
        runId: RUN,
        anchorCellId: null
      }).applyAll(run.events);

      expect(cellsJSON(reloaded)).toEqual(once);
      expect(outputs(reloaded, run.cellId(0))).toEqual([
        { output_type: 'stream', name: 'stdout', text: 'done\n' }
      ]);
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
