/**
 * The outputs of a run's code cells, as the materializer builds them in a shared
 * notebook model: streams merge, `clear_output` clears (now or at the next output),
 * and an update replaces every output shown under its display id.
 */

import type { YNotebook } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';
import { describe, expect, it } from 'vitest';

import { placeOutput, RunMaterializer } from '../src/materializer';
import { cell, cellsJSON, reload, RUN, userNotebook } from './notebooks';
import { displayData, RunEvents } from './runEvents';

function outputs(notebook: YNotebook, id: string): nbformat.IOutput[] {
  return (cell(notebook, id) as nbformat.ICodeCell).outputs;
}

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
