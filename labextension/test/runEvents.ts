/**
 * Builds event streams for tests the way `jupyter_deepanalyze/events.py` numbers them
 * (`EventSequence`) and shapes their cells (`cell_metadata`), with the cell ids of
 * `cellIdFor` (which the golden test checks against a real Python run), so that the
 * tests feed the materializer what the server sends.
 */

import type * as nbformat from '@jupyterlab/nbformat';

import {
  type CellRole,
  cellIdFor,
  type ExecutionStatus,
  type FinalRunStatus,
  type RunEvent
} from '../src/events';

type Body<T> = T extends RunEvent ? Omit<T, 'seq' | 'run_id'> : never;

export class RunEvents {
  constructor(readonly runId: string) {}

  readonly events: RunEvent[] = [];

  cellId(step: number): string {
    return cellIdFor(this.runId, step);
  }

  push(body: Body<RunEvent>): RunEvent {
    const event = {
      seq: this.events.length,
      run_id: this.runId,
      ...body
    } as RunEvent;
    this.events.push(event);
    return event;
  }

  started(question = 'What is in df?', parentRunId?: string): this {
    this.push({
      type: 'run_started',
      question,
      model: 'DeepAnalyze-8B',
      ...(parentRunId ? { parent_run_id: parentRunId } : {})
    });
    return this;
  }

  markdown(step: number, role: CellRole, source: string): this {
    this.push({
      type: 'cell',
      cell_id: this.cellId(step),
      cell_type: 'markdown',
      source,
      metadata: { deepanalyze: { run_id: this.runId, step, role } }
    });
    return this;
  }

  code(step: number, source: string): this {
    this.push({
      type: 'cell',
      cell_id: this.cellId(step),
      cell_type: 'code',
      source,
      metadata: { deepanalyze: { run_id: this.runId, step, role: 'code' } }
    });
    return this;
  }

  approval(step: number, code: string): this {
    this.push({ type: 'approval_required', cell_id: this.cellId(step), code });
    return this;
  }

  stream(
    step: number,
    text: string,
    name: 'stdout' | 'stderr' = 'stdout'
  ): this {
    return this.output(step, { output_type: 'stream', name, text });
  }

  output(step: number, output: nbformat.IOutput): this {
    this.push({ type: 'output', cell_id: this.cellId(step), output });
    return this;
  }

  /** `display(data, display_id=...)`: a display_data output remembered under its id. */
  display(step: number, displayId: string, text: string): this {
    this.push({
      type: 'output',
      cell_id: this.cellId(step),
      output: displayData(text),
      display_id: displayId
    });
    return this;
  }

  /** `handle.update(data)`, run by the code of cell `step`. */
  updateDisplay(step: number, displayId: string, text: string): this {
    this.push({
      type: 'output',
      cell_id: this.cellId(step),
      output: displayData(text),
      display_id: displayId,
      update: true
    });
    return this;
  }

  clearOutput(step: number, wait = false): this {
    this.push({ type: 'clear_output', cell_id: this.cellId(step), wait });
    return this;
  }

  executed(
    step: number,
    executionCount: number | null,
    status: ExecutionStatus = 'ok',
    code?: string
  ): this {
    this.push({
      type: 'execution_finished',
      cell_id: this.cellId(step),
      status,
      execution_count: executionCount,
      feedback: '',
      ...(code === undefined ? {} : { code })
    });
    return this;
  }

  finished(status: FinalRunStatus = 'completed', error?: string): this {
    this.push({ type: 'run_finished', status, ...(error ? { error } : {}) });
    return this;
  }
}

/** A `display_data` output showing `text`. */
export function displayData(text: string): nbformat.IDisplayData {
  return {
    output_type: 'display_data',
    data: { 'text/plain': text },
    metadata: {}
  };
}

/** A typical completed run: title, plan, one code cell with output, report. */
export function completedRun(runId: string): RunEvents {
  return new RunEvents(runId)
    .started()
    .markdown(0, 'title', '# What is in df?')
    .markdown(1, 'analyze', 'I will look at the shape of `df`.')
    .code(2, 'print(df.shape)')
    .stream(2, '(3, 2)\n')
    .output(2, {
      output_type: 'execute_result',
      execution_count: 1,
      data: { 'text/plain': '3' },
      metadata: {}
    })
    .executed(2, 1)
    .markdown(3, 'understand', '`df` has 3 rows.')
    .markdown(4, 'report', '## Report\n\n`df` has 3 rows and 2 columns.')
    .finished();
}
