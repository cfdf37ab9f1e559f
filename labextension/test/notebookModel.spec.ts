// @vitest-environment jsdom
/**
 * The materializer against JupyterLab's own notebook model: what the notebook renders
 * (each code cell model's output area and execution count) must be what the events say,
 * not only what the shared model stores.
 */

import './jupyterlabDom';

import type { ICodeCellModel } from '@jupyterlab/cells';
import type * as nbformat from '@jupyterlab/nbformat';
import { NotebookModel } from '@jupyterlab/notebook/lib/model';
import { describe, expect, it } from 'vitest';

import { RunMaterializer } from '../src/materializer';
import { displayData, RunEvents } from './runEvents';

const RUN = '0123456789abcdef0123456789abcdef';

function openNotebook(): NotebookModel {
  const model = new NotebookModel();
  model.fromJSON({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: [
      {
        id: 'user-load',
        cell_type: 'code',
        source: 'df = make_df()',
        metadata: {},
        outputs: [{ output_type: 'stream', name: 'stdout', text: 'loaded\n' }],
        execution_count: 1
      }
    ]
  });
  return model;
}

function codeCell(model: NotebookModel, id: string): ICodeCellModel {
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.id === id) {
      return cell as ICodeCellModel;
    }
  }
  throw new Error(`no cell ${id}`);
}

/** A run whose code cell prints in pieces, to stdout and stderr, and shows a result. */
function printingRun(): RunEvents {
  return new RunEvents(RUN)
    .started()
    .code(0, 'for i in range(3): print(i)')
    .stream(0, '0\n')
    .stream(0, '1\n')
    .stream(0, 'careful\n', 'stderr')
    .stream(0, '2\n')
    .output(0, {
      output_type: 'execute_result',
      execution_count: 3,
      data: { 'text/plain': '42' },
      metadata: {}
    })
    .executed(0, 3);
}

const EXPECTED_OUTPUTS: nbformat.IOutput[] = [
  { output_type: 'stream', name: 'stdout', text: '0\n1\n' },
  { output_type: 'stream', name: 'stderr', text: 'careful\n' },
  { output_type: 'stream', name: 'stdout', text: '2\n' },
  {
    output_type: 'execute_result',
    execution_count: 3,
    data: { 'text/plain': '42' },
    metadata: {}
  }
];

describe('RunMaterializer in a JupyterLab notebook model', () => {
  it('shows merged stream outputs and the execution count in the cell the notebook renders', () => {
    const model = openNotebook();
    const run = printingRun();

    new RunMaterializer(model.sharedModel, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    const cell = codeCell(model, run.cellId(0));
    expect(cell.outputs.toJSON()).toEqual(EXPECTED_OUTPUTS);
    expect(cell.sharedModel.getOutputs()).toEqual(EXPECTED_OUTPUTS);
    expect(cell.executionCount).toBe(3);
    expect(codeCell(model, 'user-load').outputs.toJSON()).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'loaded\n' }
    ]);
  });

  it('shows the same outputs after a fresh materializer replays the run', () => {
    const model = openNotebook();
    const run = printingRun();
    new RunMaterializer(model.sharedModel, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    new RunMaterializer(model.sharedModel, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    const cell = codeCell(model, run.cellId(0));
    expect(cell.outputs.toJSON()).toEqual(EXPECTED_OUTPUTS);
    expect(cell.sharedModel.getOutputs()).toEqual(EXPECTED_OUTPUTS);
    expect(model.cells.length).toBe(2);
  });

  it('shows the code that ran after an approval with edits', () => {
    const model = openNotebook();
    const run = new RunEvents(RUN)
      .started()
      .code(0, 'df.head()')
      .approval(0, 'df.head()');
    const materializer = new RunMaterializer(model.sharedModel, {
      runId: RUN,
      anchorCellId: null
    });
    materializer.applyAll(run.events);
    const cell = codeCell(model, run.cellId(0));
    expect(cell.outputs.length).toBe(0);
    expect(cell.executionCount).toBeNull();

    cell.sharedModel.setSource('df.head(10)');
    run.stream(0, 'rows\n').executed(0, 2, 'ok', 'df.head(10)');
    materializer.applyAll(run.events);

    expect(cell.sharedModel.getSource()).toBe('df.head(10)');
    expect(cell.outputs.toJSON()).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'rows\n' }
    ]);
    expect(cell.executionCount).toBe(2);
  });

  it('shows cleared outputs and replaced displays where the events put them', () => {
    const model = openNotebook();
    const run = new RunEvents(RUN)
      .started()
      .code(0, 'progress')
      .stream(0, 'working\n')
      .clearOutput(0, true)
      .stream(0, 'step 1\n')
      .display(0, 'bar', '0%')
      .stream(0, 'step 2\n')
      .output(0, {
        output_type: 'display_data',
        data: { 'text/plain': '<Figure>' },
        metadata: {}
      })
      .stream(0, 'step 3\n')
      .updateDisplay(0, 'bar', '100%')
      .stream(0, 'done\n')
      .executed(0, 4)
      .code(1, 'clear_output()')
      .stream(1, 'gone\n')
      .clearOutput(1)
      .stream(1, 'fresh\n')
      .executed(1, 5);

    new RunMaterializer(model.sharedModel, {
      runId: RUN,
      anchorCellId: 'user-load'
    }).applyAll(run.events);

    const expected = [
      { output_type: 'stream', name: 'stdout', text: 'step 1\n' },
      displayData('100%'),
      { output_type: 'stream', name: 'stdout', text: 'step 2\n' },
      displayData('<Figure>'),
      { output_type: 'stream', name: 'stdout', text: 'step 3\ndone\n' }
    ];
    const progress = codeCell(model, run.cellId(0));
    expect(progress.sharedModel.getOutputs()).toEqual(expected);
    expect(progress.outputs.toJSON()).toEqual(expected);
    const cleared = codeCell(model, run.cellId(1));
    const fresh = [{ output_type: 'stream', name: 'stdout', text: 'fresh\n' }];
    expect(cleared.sharedModel.getOutputs()).toEqual(fresh);
    expect(cleared.outputs.toJSON()).toEqual(fresh);
  });
});
