/**
 * Following a run: the websocket URL and its resumption, resuming after a page reload,
 * and what Run/Skip send. The server is replaced by fakes at the two points the
 * frontend talks to it: `ServerConnection.makeRequest`'s settings (fetch and WebSocket)
 * and, for the session, the client's methods.
 */

import { YNotebook } from '@jupyter/ydoc';
import { ServerConnection } from '@jupyterlab/services';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  DeepAnalyzeClient,
  DeepAnalyzeRequestError,
  type IApproval,
  type IRunEventStreamHandlers,
  type IRunInfo,
  type IStreamClose
} from '../src/api';
import type { RunEvent } from '../src/events';
import { RunMaterializer } from '../src/materializer';
import { RunRecordStore, RunSession } from '../src/session';
import { completedRun, RunEvents } from './runEvents';

const RUN = '0123456789abcdef0123456789abcdef';

/** A WebSocket double that records the sockets a stream opens. */
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
  deliver(event: RunEvent): void {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  drop(): void {
    this.onclose?.({ code: 1006, reason: '' });
  }
}

function settings(
  overrides: Partial<ServerConnection.ISettings> = {}
): ServerConnection.ISettings {
  return ServerConnection.makeSettings({
    baseUrl: 'http://example.test/user/me/',
    wsUrl: 'ws://example.test/user/me/',
    token: 'secret',
    appendToken: true,
    WebSocket: FakeSocket as unknown as typeof WebSocket,
    ...overrides
  });
}

describe('DeepAnalyzeClient', () => {
  beforeEach(() => {
    FakeSocket.opened = [];
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('opens the events websocket under the base URL with since and the token', () => {
    const client = new DeepAnalyzeClient(settings());
    expect(client.eventsUrl(RUN, 7)).toBe(
      `ws://example.test/user/me/deepanalyze/runs/${RUN}/events?since=7&token=secret`
    );
    const withoutToken = new DeepAnalyzeClient(
      settings({ appendToken: false })
    );
    expect(withoutToken.eventsUrl(RUN, 0)).toBe(
      `ws://example.test/user/me/deepanalyze/runs/${RUN}/events?since=0`
    );
  });

  it('reconnects after a dropped connection from the event after the last one seen', () => {
    const client = new DeepAnalyzeClient(settings({ appendToken: false }));
    const seen: number[] = [];
    const run = completedRun(RUN);
    client.streamEvents(RUN, 0, {
      onEvent: event => seen.push(event.seq),
      onError: () => undefined
    });
    const [first] = FakeSocket.opened;
    run.events.slice(0, 4).forEach(event => first.deliver(event));
    first.drop();
    vi.runOnlyPendingTimers();

    expect(FakeSocket.opened).toHaveLength(2);
    const second = FakeSocket.opened[1];
    expect(second.url).toMatch(/\?since=4$/);
    run.events.slice(4).forEach(event => second.deliver(event));

    expect(seen).toEqual(run.events.map(event => event.seq));
    // run_finished ends the stream: no reconnection after it.
    expect(second.closed).toBe(true);
    second.drop();
    vi.runOnlyPendingTimers();
    expect(FakeSocket.opened).toHaveLength(2);
  });

  it('gives up, saying how the socket closed, when the connection keeps failing', () => {
    const client = new DeepAnalyzeClient(settings());
    const errors: IStreamClose[] = [];
    client.streamEvents(RUN, 0, {
      onEvent: () => undefined,
      onError: close => errors.push(close)
    });
    for (let attempt = 0; attempt < 10 && errors.length === 0; attempt++) {
      FakeSocket.opened[FakeSocket.opened.length - 1].drop();
      vi.runOnlyPendingTimers();
    }
    expect(errors).toEqual([{ code: 1006, reason: '' }]);
  });

  it("reports an HTTP error with the server's message", async () => {
    const fetch = vi.fn(
      async () =>
        new Response(
          JSON.stringify({
            message: 'kernel k already has an active run',
            reason: null
          }),
          { status: 409, statusText: 'Conflict' }
        )
    );
    const client = new DeepAnalyzeClient(
      settings({ fetch: fetch as unknown as typeof globalThis.fetch })
    );

    const failure = client.startRun({ question: 'q' });

    await expect(failure).rejects.toBeInstanceOf(DeepAnalyzeRequestError);
    await expect(failure).rejects.toMatchObject({
      message: 'kernel k already has an active run',
      status: 409
    });
    const [request] = fetch.mock.calls[0] as unknown as [Request];
    expect(request.url.split('?')[0]).toBe(
      'http://example.test/user/me/deepanalyze/runs'
    );
    expect(request.method).toBe('POST');
    // Authentication and XSRF are ServerConnection's: the token header is there.
    expect(request.headers.get('Authorization')).toBe('token secret');
    expect(request.headers.get('Content-Type')).toBe('application/json');
    expect(JSON.parse(await request.text())).toEqual({ question: 'q' });
  });
});

/** The client's surface that a session uses, answered from memory. */
class FakeClient {
  constructor(readonly info: IRunInfo) {}
  streams: { since: number; handlers: IRunEventStreamHandlers }[] = [];
  approvals: IApproval[] = [];
  async getRun(): Promise<IRunInfo> {
    return this.info;
  }
  streamEvents(
    _runId: string,
    since: number,
    handlers: IRunEventStreamHandlers
  ) {
    this.streams.push({ since, handlers });
    return { dispose: () => undefined };
  }
  async approve(_runId: string, approval: IApproval): Promise<void> {
    this.approvals.push(approval);
  }
  asClient(): DeepAnalyzeClient {
    return this as unknown as DeepAnalyzeClient;
  }
}

function emptyNotebook(): YNotebook {
  const notebook = new YNotebook();
  notebook.fromJSON({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: []
  });
  return notebook;
}

const record = {
  runId: RUN,
  notebookPath: 'analysis.ipynb',
  anchorCellId: null,
  startedAt: 0
};

describe('RunSession', () => {
  it("resumes a run from the server's log, then streams from the next seq", async () => {
    const run = completedRun(RUN);
    const cut = 5;
    const client = new FakeClient({
      run_id: RUN,
      kernel_id: 'k',
      status: 'running',
      events: run.events.slice(0, cut)
    });
    const session = new RunSession(client.asClient(), record);
    const notebook = emptyNotebook();

    await session.resume();
    session.attach(notebook);
    expect(client.streams.map(s => s.since)).toEqual([cut]);
    // The websocket may repeat what the log already had: nothing doubles.
    run.events
      .slice(cut - 2)
      .forEach(e => client.streams[0].handlers.onEvent(e));

    const expected = emptyNotebook();
    new RunMaterializer(expected, { runId: RUN, anchorCellId: null }).applyAll(
      run.events
    );
    expect(notebook.toJSON().cells).toEqual(expected.toJSON().cells);
    expect(notebook.cells).toHaveLength(5);
    expect(session.finished).toBe(true);
    expect(session.transcript.status).toBe('completed');
  });

  it('does not stream a run that had finished', async () => {
    const run = completedRun(RUN);
    const client = new FakeClient({
      run_id: RUN,
      kernel_id: 'k',
      status: 'completed',
      events: run.events
    });
    const session = new RunSession(client.asClient(), record);
    await session.resume();
    expect(client.streams).toEqual([]);
    expect(session.finished).toBe(true);
  });

  it("sends Run with the cell's current source, and Skip without code", async () => {
    const run = new RunEvents(RUN)
      .started()
      .code(0, 'df.head()')
      .approval(0, 'df.head()')
      .code(1, 'df.tail()')
      .approval(1, 'df.tail()');
    const client = new FakeClient({
      run_id: RUN,
      kernel_id: 'k',
      status: 'waiting_approval',
      events: run.events
    });
    const session = new RunSession(client.asClient(), record);
    const notebook = emptyNotebook();
    await session.resume();
    session.attach(notebook);
    expect(session.pendingApprovals.map(p => p.cellId)).toEqual([
      run.cellId(0),
      run.cellId(1)
    ]);

    notebook.cells.find(c => c.id === run.cellId(0))!.setSource('df.head(20)');
    await session.decide(run.cellId(0), 'run');
    await session.decide(run.cellId(1), 'skip');

    expect(client.approvals).toEqual([
      { cell_id: run.cellId(0), action: 'run', code: 'df.head(20)' },
      { cell_id: run.cellId(1), action: 'skip' }
    ]);
  });
});

describe('RunRecordStore', () => {
  it('keeps the active run until it is cleared, and the last run after that', () => {
    const storage = new Map<string, string>();
    const backend = {
      getItem: (key: string) => storage.get(key) ?? null,
      setItem: (key: string, value: string) => void storage.set(key, value),
      removeItem: (key: string) => void storage.delete(key)
    };
    const store = new RunRecordStore(backend, 'http://example.test/');
    store.active = record;

    const reloaded = new RunRecordStore(backend, 'http://example.test/');
    expect(reloaded.active).toEqual(record);
    reloaded.active = null;

    expect(
      new RunRecordStore(backend, 'http://example.test/').active
    ).toBeNull();
    expect(new RunRecordStore(backend, 'http://example.test/').last).toEqual(
      record
    );
    // Another server's records are its own.
    expect(new RunRecordStore(backend, 'http://other.test/').last).toBeNull();
  });
});
