/**
 * The sidebar's chat view of a run, from the events the server streams.
 */

import { describe, expect, it } from 'vitest';

import { parseRunBundle, RUN_MIME_TYPE } from '../src/events';
import { RunTranscript } from '../src/transcript';
import { completedRun, RunEvents } from './runEvents';

const RUN = '0123456789abcdef0123456789abcdef';

describe('RunTranscript', () => {
  it('streams delta text into a step and settles it on its segment', () => {
    const run = new RunEvents(RUN).started('How many rows?');
    run.push({ type: 'delta', step: 1, text: 'I will ', tag: 'Analyze' });
    run.push({ type: 'delta', step: 1, text: 'count', tag: 'Analyze' });
    const transcript = new RunTranscript(RUN);
    transcript.applyAll(run.events);

    expect(transcript.question).toBe('How many rows?');
    expect(transcript.entries).toMatchObject([
      { step: 1, kind: 'Analyze', text: 'I will count', streaming: true }
    ]);

    run.push({
      type: 'segment',
      step: 1,
      tag: 'Analyze',
      text: '\nI will count rows.\n'
    });
    transcript.applyAll(run.events);

    expect(transcript.entries).toMatchObject([
      { step: 1, kind: 'Analyze', text: 'I will count rows.', streaming: false }
    ]);
    expect(transcript.status).toBe('running');
  });

  it('shows a code step as its cell source with the execution status', () => {
    const run = new RunEvents(RUN).started();
    run.push({
      type: 'delta',
      step: 2,
      text: '```python\nlen(df',
      tag: 'Code'
    });
    run.push({
      type: 'segment',
      step: 2,
      tag: 'Code',
      text: '```python\nlen(df)\n```'
    });
    run.code(2, 'len(df)').stream(2, '3\n');
    run.push({
      type: 'execution_finished',
      cell_id: run.cellId(2),
      status: 'error',
      execution_count: 5,
      feedback: "[Error]:\nNameError: name 'df' is not defined"
    });
    const transcript = new RunTranscript(RUN);
    transcript.applyAll(run.events);

    expect(transcript.entries).toEqual([
      {
        step: 2,
        kind: 'Code',
        text: 'len(df)',
        streaming: false,
        cellId: run.cellId(2),
        approvalCode: null,
        execution: {
          status: 'error',
          executionCount: 5,
          feedback: "[Error]:\nNameError: name 'df' is not defined"
        }
      }
    ]);
  });

  it('says when a cancelled block keeps the kernel busy, with the reason', () => {
    const run = new RunEvents(RUN).started().code(1, 'while True: ...');
    run.executed(1, null, 'unresponsive');
    const error =
      'The kernel did not stop: the running code ignores interrupts (it catches KeyboardInterrupt) and the kernel is still busy with it.';
    run.push({ type: 'run_finished', status: 'cancelled', error });
    const transcript = new RunTranscript(RUN);
    transcript.applyAll(run.events);
    expect(transcript.status).toBe('cancelled');
    expect(transcript.kernelUnresponsive).toBe(true);
    expect(transcript.error).toBe(error);
    expect(transcript.entries[0].execution?.status).toBe('unresponsive');
  });

  it('lists a code cell as waiting for approval until it ran or was skipped', () => {
    const run = new RunEvents(RUN)
      .started()
      .code(0, 'a = 1')
      .approval(0, 'a = 1')
      .code(1, 'b = 2')
      .approval(1, 'b = 2');
    const transcript = new RunTranscript(RUN);
    transcript.applyAll(run.events);
    expect(transcript.status).toBe('waiting_approval');
    expect(transcript.pendingApprovals.map(p => p.cellId)).toEqual([
      run.cellId(0),
      run.cellId(1)
    ]);

    run.executed(0, null, 'skipped').executed(1, 3, 'ok', 'b = 3');
    transcript.applyAll(run.events);

    expect(transcript.pendingApprovals).toEqual([]);
    expect(transcript.status).toBe('running');
    expect(transcript.entries[0].execution?.status).toBe('skipped');
    expect(transcript.entries[1].text).toBe('b = 3');
  });

  it('reports a failed run with its error as a readable line', () => {
    const run = new RunEvents(RUN)
      .started()
      .finished('failed', 'The context window (32768 tokens) is full');
    const transcript = new RunTranscript(RUN);
    transcript.applyAll(run.events);

    expect(transcript.finished).toBe(true);
    expect(transcript.status).toBe('failed');
    expect(transcript.error).toBe('The context window (32768 tokens) is full');
  });

  it('does not repeat text when events are replayed', () => {
    const run = completedRun(RUN);
    const once = new RunTranscript(RUN);
    once.applyAll(run.events);
    const twice = new RunTranscript(RUN);
    twice.applyAll(run.events);
    twice.applyAll(run.events);

    expect(twice.entries).toEqual(once.entries);
    // The title repeats the question, which the view shows once, as its header.
    expect(once.entries.map(e => e.kind)).toEqual([
      'Analyze',
      'Code',
      'Understand',
      'Answer'
    ]);
    expect(once.status).toBe('completed');
  });
});

describe('parseRunBundle', () => {
  it("reads the %analyze magic's output and keeps only known events", () => {
    const run = completedRun(RUN);
    const bundle = parseRunBundle({
      version: 1,
      run_id: RUN,
      events: [...run.events, { seq: 99, run_id: RUN, type: 'from_the_future' }]
    });
    expect(bundle.events).toEqual(run.events);
    expect(RUN_MIME_TYPE).toBe('application/vnd.deepanalyze.run+json');
  });

  it('rejects what it cannot show, with a readable message', () => {
    expect(() =>
      parseRunBundle({ version: 2, run_id: RUN, events: [] })
    ).toThrow('Unsupported DeepAnalyze output version 2');
    expect(() => parseRunBundle({ version: 1 })).toThrow(
      'lacks run_id or events'
    );
  });
});
