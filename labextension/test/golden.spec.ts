// @vitest-environment jsdom
/**
 * One event contract in both languages: the events a real Python run wrote
 * (`tests/golden/run-events.jsonl`, from `python -m tests.golden.generate`) must become,
 * through this extension's materializer, exactly the cells of the notebook that the
 * Python package's `NotebookBuilder` made of them (`tests/golden/run-notebook.ipynb`):
 * same ids, types, sources, metadata, outputs and execution counts. `test_golden.py`
 * holds the Python side to the same two files.
 */

import './jupyterlabDom';

import { YNotebook } from '@jupyter/ydoc';
import type { ICodeCellModel } from '@jupyterlab/cells';
import type * as nbformat from '@jupyterlab/nbformat';
import { NotebookModel } from '@jupyterlab/notebook/lib/model';
import { describe, expect, it } from 'vitest';

import goldenEvents from '../../tests/golden/run-events.jsonl?raw';
import goldenNotebook from '../../tests/golden/run-notebook.ipynb?raw';
import {
  cellIdFor,
  type ICellEvent,
  isRunEvent,
  parseRunBundle,
  type RunEvent
} from '../src/events';
import { previewCells, RunMaterializer } from '../src/materializer';
import type { INotebookTarget } from '../src/runCells';
import { RunTranscript } from '../src/transcript';

const lines: unknown[] = goldenEvents
  .split('\n')
  .filter(line => line.trim() !== '')
  .map(line => JSON.parse(line));
const events = lines.filter(isRunEvent);
const notebook = JSON.parse(goldenNotebook) as nbformat.INotebookContent;

/** The runs of the golden file, in the order they start. */
const runIds = [...new Set(events.map(event => event.run_id))];

function eventsOf(runId: string): RunEvent[] {
  return events.filter(event => event.run_id === runId);
}

function text(value: nbformat.MultilineString | undefined): string {
  return Array.isArray(value) ? value.join('') : (value ?? '');
}

/** nbformat allows a string or a list of lines; compare the text they hold. */
function normalizeOutput(output: nbformat.IOutput): nbformat.IOutput {
  const result: Record<string, unknown> = { ...output };
  if (output.output_type === 'stream') {
    result.text = text(output.text as nbformat.MultilineString);
  }
  if (typeof output.data === 'object' && output.data !== null) {
    result.data = Object.fromEntries(
      Object.entries(output.data).map(([mime, value]) => [
        mime,
        typeof value === 'string' || Array.isArray(value)
          ? text(value as nbformat.MultilineString)
          : value
      ])
    );
  }
  return result as nbformat.IOutput;
}

/** What the golden test compares of a cell. */
function comparable(cell: nbformat.ICell): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: cell.id,
    cell_type: cell.cell_type,
    source: text(cell.source),
    metadata: cell.metadata
  };
  if (cell.cell_type === 'code') {
    const code = cell as nbformat.ICodeCell;
    view.outputs = code.outputs.map(normalizeOutput);
    view.execution_count = code.execution_count;
  }
  return view;
}

const expectedCells = notebook.cells.map(comparable);

function emptyNotebook(): YNotebook {
  const target = new YNotebook();
  target.fromJSON({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [] });
  return target;
}

/** Every run of the golden file materialized into `target`, one below the other. */
function materializeAll(target: INotebookTarget): void {
  for (const runId of runIds) {
    new RunMaterializer(target, { runId, anchorCellId: null }).applyAll(
      eventsOf(runId)
    );
  }
}

describe('the golden run', () => {
  it('is read as events, every line of it', () => {
    expect(events).toHaveLength(lines.length);
    expect(runIds).toHaveLength(2);
    for (const runId of runIds) {
      const bundle = { version: 1, run_id: runId, events: eventsOf(runId) };
      expect(parseRunBundle(bundle).events).toEqual(eventsOf(runId));
    }
  });

  it('names its cells as cellIdFor does', () => {
    const cells = events.filter(
      (event): event is ICellEvent => event.type === 'cell'
    );
    expect(cells.length).toBeGreaterThan(0);
    for (const cell of cells) {
      const step = cell.metadata.deepanalyze?.step ?? -1;
      expect(cell.cell_id).toBe(cellIdFor(cell.run_id, step));
    }
  });

  it("becomes the golden notebook's cells in the live notebook", () => {
    const target = emptyNotebook();

    materializeAll(target);

    const cells = target.toJSON().cells as nbformat.ICell[];
    expect(cells.map(comparable)).toEqual(expectedCells);
  });

  it('becomes the same cells when replayed onto them, as after a reload', () => {
    const target = emptyNotebook();
    materializeAll(target);
    const reloaded = new YNotebook();
    reloaded.fromJSON(target.toJSON());

    materializeAll(reloaded);

    const cells = reloaded.toJSON().cells as nbformat.ICell[];
    expect(cells.map(comparable)).toEqual(expectedCells);
  });

  it('shows the golden outputs and counts in the cells JupyterLab renders', () => {
    const model = new NotebookModel();
    model.fromJSON({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [] });
    // A notebook model never has no cell: it starts with an empty one, the user's.
    const userCellId = model.cells.get(0).id;

    materializeAll(model.sharedModel);

    const expected = expectedCells.filter(cell => cell.cell_type === 'code');
    const rendered = [];
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      if (cell.type === 'code' && cell.id !== userCellId) {
        const code = cell as ICodeCellModel;
        rendered.push({
          id: code.id,
          outputs: code.outputs.toJSON().map(normalizeOutput),
          execution_count: code.executionCount
        });
      }
    }
    expect(rendered).toEqual(
      expected.map(({ id, outputs, execution_count }) => ({
        id,
        outputs,
        execution_count
      }))
    );
  });

  it("becomes the same cells in the %analyze output's preview", () => {
    const cells = runIds.flatMap(runId =>
      previewCells({ version: 1, run_id: runId, events: eventsOf(runId) })
    );
    const previewed = cells.map(cell => {
      const json = (cell as unknown as { toJSON(): nbformat.ICell }).toJSON();
      return comparable(json);
    });
    expect(previewed).toEqual(expectedCells);
  });

  it('ends each run with the status of its run_finished event in the chat view', () => {
    const statuses = runIds.map(runId => {
      const transcript = new RunTranscript(runId);
      transcript.applyAll(eventsOf(runId));
      return transcript.status;
    });
    expect(statuses).toEqual(
      runIds.map(runId => {
        const finished = eventsOf(runId).find(e => e.type === 'run_finished');
        return finished?.type === 'run_finished' ? finished.status : null;
      })
    );
  });
});
