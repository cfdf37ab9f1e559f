/**
 * The run controller against the real client: requests go through
 * `ServerConnection.makeRequest` and the events websocket through `RunEventStream`, and
 * only the two points where the frontend meets the server are doubles (the settings'
 * `fetch`, answered by `FakeServer` from memory, and `WebSocket`). Notebooks are real
 * shared notebook models behind `INotebookHost`.
 */

import { YNotebook } from '@jupyter/ydoc';
import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator } from '@jupyterlab/translation';
import { type ISignal, Signal } from '@lumino/signaling';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { DeepAnalyzeClient, type IStartRunRequest } from '../src/api';
import { Conversations } from '../src/conversations';
import type { RunEvent } from '../src/events';
import { labelsFor } from '../src/labels';
import { RunMaterializer } from '../src/materializer';
import type { INotebookHost, IOpenNotebook } from '../src/notebooks';
import type { INotebookTarget } from '../src/runCells';
import { RunController } from '../src/runController';
import { type IRunRecord, RunRecordStore } from '../src/session';
import { completedRun, RunEvents } from './runEvents';

const RUN = '0123456789abcdef0123456789abcdef';
const OTHER_RUN = 'fedcba9876543210fedcba9876543210';
const THIRD_RUN = '33333333333333333333333333333333';
const KERNEL = 'kernel-1';
const labels = labelsFor(nullTranslator.load('jupyter_deepanalyze'));

/** A WebSocket double that records the sockets the client opens. */
class FakeSocket {
  static opened: FakeSocket[] = [];
  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
  }
  onopen: (() => void) | null = null;
  onmessage: ((message: { data: string }) => void) | null = null;
  onclose: ((close: { code: number; reason: string }) => void) | null = null;
  closed = false;
  close(): void {
    this.closed = true;
  }
  deliver(events: RunEvent[]): void {
    for (const event of events) {
      this.onmessage?.({ data: JSON.stringify(event) });
    }
  }
  /** The connection drops (a proxy timeout, a laptop waking up). */
  drop(): void {
    this.onclose?.({ code: 1006, reason: '' });
  }
  static last(): FakeSocket {
    return FakeSocket.opened[FakeSocket.opened.length - 1];
  }
}

interface IStoredRun {
  kernel_id: string;
  status: string;
  question: string;
  events: RunEvent[];
  parent_run_id?: string | null;
}

/** The server's `/deepanalyze/` routes, answered from memory. */
class FakeServer {
  /** Every POST /deepanalyze/runs body, in order. */
  readonly started: IStartRunRequest[] = [];
  /** The runs the server knows. */
  readonly runs = new Map<string, IStoredRun>();
  /** How the next POST /deepanalyze/runs is answered (201 with RUN by default). */
  startReplies: Array<() => Response> = [];
  /** The ids the next runs started get (RUN once these are used up). */
  nextRunIds: string[] = [];

  fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const path = url.pathname.replace(/^\/user\/me\/deepanalyze\//, '');
    if (request.method === 'POST' && path === 'runs') {
      this.started.push(JSON.parse(await request.text()));
      const reply = this.startReplies.shift();
      return reply
        ? reply()
        : json(201, {
            run_id: this.nextRunIds.shift() ?? RUN,
            kernel_id: KERNEL
          });
    }
    if (request.method === 'GET' && path === 'runs') {
      const kernelId = url.searchParams.get('kernel_id');
      const runs = [...this.runs.entries()]
        .filter(([, run]) => kernelId === null || run.kernel_id === kernelId)
        .map(([run_id, run]) => ({
          run_id,
          kernel_id: run.kernel_id,
          status: run.status,
          question: run.question,
          parent_run_id: run.parent_run_id ?? null
        }))
        .reverse(); // newest first
      return json(200, { runs });
    }
    const match = /^runs\/([^/]+)$/.exec(path);
    if (request.method === 'GET' && match) {
      const run = this.runs.get(match[1]);
      return run
        ? json(200, { run_id: match[1], ...run })
        : json(404, { message: `no run ${match[1]}` });
    }
    return json(404, { message: `no route ${request.method} ${path}` });
  };

  settings(): ServerConnection.ISettings {
    return ServerConnection.makeSettings({
      baseUrl: 'http://example.test/user/me/',
      wsUrl: 'ws://example.test/user/me/',
      token: 'secret',
      appendToken: false,
      fetch: this.fetch as unknown as typeof globalThis.fetch,
      WebSocket: FakeSocket as unknown as typeof WebSocket
    });
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status });
}

/** An open notebook: a real shared model, its kernel, its active cell. */
class FakeNotebook implements IOpenNotebook {
  constructor(
    public path: string,
    readonly kernelId: string | null
  ) {
    this.model.fromJSON({
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {},
      cells: [
        {
          id: 'user-load',
          cell_type: 'code',
          source: 'df = load()',
          metadata: {},
          outputs: [],
          execution_count: 1
        }
      ]
    });
  }

  readonly model = new YNotebook();
  readonly widgetId = 'fake-notebook-panel';
  activeCellId: string | null = 'user-load';
  isClosed = false;

  get target(): INotebookTarget {
    return this.model;
  }

  async contentReady(): Promise<void> {}
  async ready(): Promise<void> {}
  async revealCell(): Promise<void> {}

  close(): void {
    this.isClosed = true;
    this._closed.emit();
  }

  get pathChanged(): ISignal<IOpenNotebook, string> {
    return this._pathChanged;
  }
  get closed(): ISignal<IOpenNotebook, void> {
    return this._closed;
  }
  get kernelStateChanged(): ISignal<IOpenNotebook, void> {
    return this._kernelStateChanged;
  }

  private readonly _pathChanged = new Signal<IOpenNotebook, string>(this);
  private readonly _closed = new Signal<IOpenNotebook, void>(this);
  private readonly _kernelStateChanged = new Signal<IOpenNotebook, void>(this);
}

/** The page's open notebooks. */
class FakeNotebooks implements INotebookHost {
  constructor(readonly open_: FakeNotebook[]) {}

  get current(): IOpenNotebook | null {
    return this.open_[0] ?? null;
  }
  readonly currentChanged: Signal<INotebookHost, IOpenNotebook | null> =
    new Signal(this);
  readonly opened: Signal<INotebookHost, IOpenNotebook> = new Signal(this);
  readonly restored = Promise.resolve();
  all(): IOpenNotebook[] {
    return this.open_.filter(notebook => !notebook.isClosed);
  }
  find(path: string): IOpenNotebook | undefined {
    return this.all().find(notebook => notebook.path === path);
  }
  open(path: string): IOpenNotebook | undefined {
    return this.find(path);
  }
  /** The user opens `notebook` (again). */
  reopen(notebook: FakeNotebook): void {
    notebook.isClosed = false;
    this.opened.emit(notebook);
  }
}

function memoryStore(): RunRecordStore {
  const storage = new Map<string, string>();
  return new RunRecordStore(
    {
      getItem: key => storage.get(key) ?? null,
      setItem: (key, value) => void storage.set(key, value),
      removeItem: key => void storage.delete(key)
    },
    'http://example.test/user/me/'
  );
}

function controllerFor(
  server: FakeServer,
  notebooks: FakeNotebooks,
  store = memoryStore(),
  conversations?: Conversations
): RunController {
  const client = new DeepAnalyzeClient(server.settings());
  return new RunController({
    client,
    notebooks,
    store,
    labels,
    conversations: conversations ?? new Conversations(client, labels),
    runSettings: () => ({
      model: '',
      approval: 'manual',
      placement: 'below-active-cell'
    }),
    listedVariables: kernelId => (kernelId === KERNEL ? ['df'] : [])
  });
}

/** The cells `events` make below `user-load` in a notebook like `FakeNotebook`'s. */
function expectedCells(runId: string, events: RunEvent[]): unknown[] {
  const notebook = new FakeNotebook('expected.ipynb', KERNEL);
  new RunMaterializer(notebook.model, {
    runId,
    anchorCellId: 'user-load'
  }).applyAll(events);
  return notebook.model.toJSON().cells;
}

/** A run of the other tab, waiting for its code cell's approval, then finishing. */
function otherTabsRun(): { waiting: RunEvent[]; rest: RunEvent[] } {
  const run = new RunEvents(OTHER_RUN)
    .started('How many rows?')
    .markdown(0, 'title', '# How many rows?')
    .code(1, 'len(df)')
    .approval(1, 'len(df)');
  const waiting = [...run.events];
  run
    .stream(1, '4\n')
    .executed(1, 2)
    .markdown(2, 'report', '4 rows.')
    .finished();
  return { waiting, rest: run.events.slice(waiting.length) };
}

describe('RunController', () => {
  beforeEach(() => {
    FakeSocket.opened = [];
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('starts a run below the active cell and, when the websocket drops, reconnects from the next seq', async () => {
    const server = new FakeServer();
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const store = memoryStore();
    const controller = controllerFor(
      server,
      new FakeNotebooks([notebook]),
      store
    );
    const ended: string[] = [];
    controller.runEnded.connect((_, session) => ended.push(session.runId));

    expect(await controller.send('What is in df?')).toBe(RUN);

    expect(server.started).toEqual([
      {
        question: 'What is in df?',
        notebook_path: 'analysis.ipynb',
        kernel_id: KERNEL,
        variables: ['df'],
        approval: 'manual'
      }
    ]);
    expect(controller.busy).toBe(true);
    expect(store.active?.runId).toBe(RUN);
    const events = completedRun(RUN).events;
    const first = FakeSocket.last();
    expect(first.url).toMatch(
      /\/deepanalyze\/runs\/[0-9a-f]+\/events\?since=0$/
    );
    first.deliver(events.slice(0, 5));

    first.drop();
    vi.runOnlyPendingTimers();

    const second = FakeSocket.last();
    expect(second).not.toBe(first);
    expect(second.url).toMatch(/\?since=5$/);
    // The server replays from `since`; a repeat of what was seen changes nothing.
    second.deliver(events.slice(3));
    expect(notebook.model.toJSON().cells).toEqual(expectedCells(RUN, events));
    expect(controller.session?.transcript.status).toBe('completed');
    expect(controller.busy).toBe(false);
    expect(store.active).toBeNull();
    expect(ended).toEqual([RUN]);
  });

  it("follows another tab's run on the notebook's kernel when the start is refused with 409", async () => {
    const server = new FakeServer();
    const { waiting, rest } = otherTabsRun();
    server.runs.set(OTHER_RUN, {
      kernel_id: KERNEL,
      status: 'waiting_approval',
      question: 'How many rows?',
      events: waiting
    });
    server.startReplies.push(() =>
      json(409, { message: `kernel ${KERNEL} already has an active run` })
    );
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const controller = controllerFor(server, new FakeNotebooks([notebook]));

    expect(await controller.send('My own question')).toBeNull();

    expect(controller.error).toBe(labels.kernelBusyWithRun);
    expect(server.started).toHaveLength(1); // the question was not started again
    const session = controller.session!;
    expect(session.runId).toBe(OTHER_RUN);
    expect(session.transcript.question).toBe('How many rows?');
    expect(session.transcript.status).toBe('waiting_approval');
    expect(controller.busy).toBe(true);
    // Its cells so far are in the notebook (at its end: where it started is unknown).
    const socket = FakeSocket.last();
    expect(socket.url).toMatch(
      new RegExp(`/runs/${OTHER_RUN}/events\\?since=${waiting.length}$`)
    );
    socket.deliver(rest);
    const all = [...waiting, ...rest];
    const cells = notebook.model.toJSON().cells;
    const expected = new FakeNotebook('expected.ipynb', KERNEL);
    new RunMaterializer(expected.model, {
      runId: OTHER_RUN,
      anchorCellId: null
    }).applyAll(all);
    expect(cells).toEqual(expected.model.toJSON().cells);
    expect(session.transcript.status).toBe('completed');
  });

  it('starts without describing the dataframes when a 409 comes from a busy kernel with no run', async () => {
    const server = new FakeServer();
    server.startReplies.push(() =>
      json(409, { message: 'the kernel is busy; try again when it is idle' })
    );
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const controller = controllerFor(server, new FakeNotebooks([notebook]));

    expect(await controller.send('What drives v?')).toBe(RUN);

    expect(server.started.map(request => request.variables)).toEqual([
      ['df'],
      undefined
    ]);
    expect(controller.error).toBeNull();
  });

  it('says why a run did not start, in one line, and stays free', async () => {
    const server = new FakeServer();
    server.startReplies.push(() =>
      json(400, { message: 'model "x" is not allowed' })
    );
    const controller = controllerFor(
      server,
      new FakeNotebooks([new FakeNotebook('analysis.ipynb', KERNEL)])
    );

    expect(await controller.send('Anything?')).toBeNull();

    expect(controller.error).toBe('model "x" is not allowed');
    expect(controller.busy).toBe(false);
    expect(
      await controllerFor(server, new FakeNotebooks([])).send('No notebook?')
    ).toBeNull();
  });

  it('resumes the run this browser remembers after a reload, from the next seq', async () => {
    const server = new FakeServer();
    const events = completedRun(RUN).events;
    const cut = 6;
    server.runs.set(RUN, {
      kernel_id: KERNEL,
      status: 'running',
      question: 'What is in df?',
      events: events.slice(0, cut)
    });
    const store = memoryStore();
    const record: IRunRecord = {
      runId: RUN,
      notebookPath: 'analysis.ipynb',
      anchorCellId: 'user-load',
      startedAt: 0
    };
    store.active = record;
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const controller = controllerFor(
      server,
      new FakeNotebooks([notebook]),
      store
    );

    await controller.restore();

    expect(controller.session?.runId).toBe(RUN);
    expect(FakeSocket.last().url).toMatch(new RegExp(`\\?since=${cut}$`));
    FakeSocket.last().deliver(events.slice(cut));
    expect(notebook.model.toJSON().cells).toEqual(expectedCells(RUN, events));
  });

  it("follows the run on an open notebook's kernel after a reload with nothing remembered", async () => {
    const server = new FakeServer();
    const { waiting } = otherTabsRun();
    server.runs.set(OTHER_RUN, {
      kernel_id: 'kernel-2',
      status: 'waiting_approval',
      question: 'How many rows?',
      events: waiting
    });
    const idle = new FakeNotebook('idle.ipynb', KERNEL);
    const busy = new FakeNotebook('busy.ipynb', 'kernel-2');
    const controller = controllerFor(server, new FakeNotebooks([idle, busy]));

    await controller.restore();

    expect(controller.session?.runId).toBe(OTHER_RUN);
    expect(controller.session?.notebookPath).toBe('busy.ipynb');
    expect(busy.model.cells.length).toBeGreaterThan(idle.model.cells.length);
    expect(FakeSocket.last().url).toMatch(
      new RegExp(`since=${waiting.length}$`)
    );
  });

  it('keeps the events while its notebook is closed and writes them when it is reopened', async () => {
    const server = new FakeServer();
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const notebooks = new FakeNotebooks([notebook]);
    const controller = controllerFor(server, notebooks);
    await controller.send('What is in df?');
    const events = completedRun(RUN).events;
    FakeSocket.last().deliver(events.slice(0, 3));

    notebook.close();
    expect(controller.session?.attached).toBe(false);
    FakeSocket.last().deliver(events.slice(3, 6));
    const whileClosed = notebook.model.toJSON().cells;
    notebooks.reopen(notebook);
    await notebook.contentReady();
    FakeSocket.last().deliver(events.slice(6));

    expect(whileClosed).toEqual(expectedCells(RUN, events.slice(0, 3)));
    expect(notebook.model.toJSON().cells).toEqual(expectedCells(RUN, events));
  });

  it('asks the next question as a follow-up of the last run, its cells below that run, until New conversation', async () => {
    const server = new FakeServer();
    server.nextRunIds = [RUN, OTHER_RUN, THIRD_RUN];
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const client = new DeepAnalyzeClient(server.settings());
    const conversations = new Conversations(client, labels);
    const controller = controllerFor(
      server,
      new FakeNotebooks([notebook]),
      memoryStore(),
      conversations
    );
    await controller.send('What is in df?');
    FakeSocket.last().deliver(completedRun(RUN).events);
    // The user's cursor is back on their own first cell: a follow-up still goes below the run.
    notebook.activeCellId = 'user-load';

    expect(await controller.send('And the mean?')).toBe(OTHER_RUN);
    const followUp = new RunEvents(OTHER_RUN)
      .started('And the mean?')
      .markdown(0, 'title', '# And the mean?')
      .markdown(1, 'report', 'It is 2.')
      .finished();
    FakeSocket.last().deliver(followUp.events);

    expect(server.started[1].parent_run_id).toBe(RUN);
    expect(server.started[0].parent_run_id).toBeUndefined();
    const ids = notebook.model.cells.map(cell => cell.id);
    const lastOfFirst = Math.max(
      ...ids.flatMap((id, i) => (id.includes(RUN.slice(0, 16)) ? [i] : []))
    );
    expect(ids[lastOfFirst + 1]).toBe(`da-${OTHER_RUN.slice(0, 16)}-0`);
    expect(conversations.thread('analysis.ipynb').map(s => s.runId)).toEqual([
      RUN,
      OTHER_RUN
    ]);

    conversations.startNew('analysis.ipynb');
    expect(await controller.send('Something else')).toBe(THIRD_RUN);
    expect(server.started[2].parent_run_id).toBeUndefined();
    expect(conversations.thread('analysis.ipynb').map(s => s.runId)).toEqual([
      THIRD_RUN
    ]);
  });

  it("rebuilds a notebook's conversation from the server after a reload: the newest run and the runs it follows", async () => {
    const server = new FakeServer();
    server.runs.set(RUN, {
      kernel_id: KERNEL,
      status: 'completed',
      question: 'What is in df?',
      events: completedRun(RUN).events
    });
    const followUp = new RunEvents(OTHER_RUN)
      .started('And the mean?', RUN)
      .markdown(0, 'report', 'It is 2.')
      .finished();
    server.runs.set(OTHER_RUN, {
      kernel_id: KERNEL,
      status: 'completed',
      question: 'And the mean?',
      events: followUp.events,
      parent_run_id: RUN
    });
    const notebook = new FakeNotebook('analysis.ipynb', KERNEL);
    const conversations = new Conversations(
      new DeepAnalyzeClient(server.settings()),
      labels
    );

    await conversations.load(notebook);

    const thread = conversations.thread('analysis.ipynb');
    expect(
      thread.map(s => [s.runId, s.transcript.question, s.transcript.status])
    ).toEqual([
      [RUN, 'What is in df?', 'completed'],
      [OTHER_RUN, 'And the mean?', 'completed']
    ]);
    expect(thread[1].transcript.parentRunId).toBe(RUN);
    expect(conversations.parentFor('analysis.ipynb', KERNEL)).toBe(OTHER_RUN);
    expect(
      conversations.parentFor('analysis.ipynb', 'another-kernel')
    ).toBeNull();
    expect(FakeSocket.opened).toEqual([]); // finished runs are read, not followed
  });
});
