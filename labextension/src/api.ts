/**
 * The server's DeepAnalyze API as the frontend calls it.
 *
 * Owns the routes and JSON shapes of ARCHITECTURE.md ("Server API") and the event
 * websocket. Every HTTP request goes through `ServerConnection.makeRequest` and the
 * websocket URL is built from the server settings the way Jupyter's own kernel client
 * does, so the token and XSRF protection work as for the rest of JupyterLab.
 *
 * Must not hold UI state: callers decide what to show.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { isRunEvent, type RunEvent, type RunStatus } from './events';

export type ApprovalMode = 'auto' | 'manual';

export interface IStartRunRequest {
  question: string;
  notebook_path?: string;
  kernel_id?: string;
  files?: string[];
  variables?: string[];
  model?: string;
  approval?: ApprovalMode;
  /** A follow-up: the finished run (on the same kernel) whose conversation it continues. */
  parent_run_id?: string;
}

export interface IStartRunReply {
  run_id: string;
  kernel_id: string;
  parent_run_id?: string | null;
}

export interface IRunInfo {
  run_id: string;
  kernel_id: string;
  status: RunStatus;
  events: RunEvent[];
}

/** One run as `GET /deepanalyze/runs` lists it. */
export interface IRunSummary {
  run_id: string;
  kernel_id: string | null;
  status: RunStatus;
  /** The question, shortened to 500 characters (the run's own events hold all of it). */
  question: string | null;
  /** The run it follows up, for a follow-up. */
  parent_run_id?: string | null;
}

export type ExportFormat = 'html' | 'pdf' | 'markdown';

/** What `POST /deepanalyze/runs/{id}/export` wrote, as server-root relative paths. */
export interface IExportReply {
  path: string;
  format: ExportFormat;
  files: string[];
}

export interface IApproval {
  cell_id: string;
  action: 'run' | 'skip';
  code?: string;
}

export interface IModelInfo {
  spec: string;
  name: string;
  dialect: string;
  available: boolean;
  /** Why it is unavailable, in JupyterLab terms (where to set it). */
  error?: string;
  /** `user`: the user's own model, from Model settings. */
  source?: 'user';
}

export interface IModelList {
  default: string;
  models: IModelInfo[];
  /** Whether users may add their own model (`DeepAnalyze.allow_user_models`). */
  user_models?: boolean;
}

/** The user's own model as the server answers it: never the key. */
export interface IUserModel {
  url: string;
  model_name: string;
  has_api_key: boolean;
}

/** What Model settings sends; an absent `api_key` keeps the saved one. */
export interface IUserModelSettings {
  url: string;
  model_name?: string;
  api_key?: string;
}

/** `GET {url}/models` through the server, with the key. */
export interface IModelTest {
  ok: boolean;
  models: string[];
  error?: string;
}

export interface IVariableInfo {
  name: string;
  type: string;
  shape: number[] | null;
  columns: { name: string; dtype: string }[];
  memory_bytes: number | null;
}

/**
 * A failed request, with the server's own message when it gave one. `status` is null
 * when the server could not be reached at all (the message is then the browser's).
 */
export class DeepAnalyzeRequestError extends Error {
  constructor(
    message: string,
    readonly status: number | null
  ) {
    super(message);
    this.name = 'DeepAnalyzeRequestError';
  }
}

const API_ROOT = 'deepanalyze';

/** Client of the `/deepanalyze/...` routes of one Jupyter server. */
export class DeepAnalyzeClient {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  startRun(request: IStartRunRequest): Promise<IStartRunReply> {
    return this._post('runs', request);
  }

  getRun(runId: string): Promise<IRunInfo> {
    return this._request(`runs/${encodeURIComponent(runId)}`);
  }

  /**
   * The runs the server has logged, newest first (the 50 newest; those on `kernelId`
   * only when given).
   */
  async listRuns(kernelId?: string): Promise<IRunSummary[]> {
    const query = kernelId ? `?kernel_id=${encodeURIComponent(kernelId)}` : '';
    const reply = await this._request<{ runs: IRunSummary[] }>(
      'runs',
      {},
      query
    );
    return reply.runs;
  }

  async cancelRun(runId: string): Promise<void> {
    await this._post(`runs/${encodeURIComponent(runId)}/cancel`, {});
  }

  /** Writes the conversation up to `runId` as `format` beside the notebook at `notebookPath`. */
  exportRun(
    runId: string,
    format: ExportFormat,
    notebookPath: string
  ): Promise<IExportReply> {
    return this._post(`runs/${encodeURIComponent(runId)}/export`, {
      format,
      notebook_path: notebookPath
    });
  }

  /** The URL that downloads the file at `path` (server-root relative). */
  downloadUrl(path: string): string {
    return (
      URLExt.join(
        this.serverSettings.baseUrl,
        'files',
        URLExt.encodeParts(path)
      ) + '?download=1'
    );
  }

  async approve(runId: string, approval: IApproval): Promise<void> {
    await this._post(`runs/${encodeURIComponent(runId)}/approve`, approval);
  }

  listModels(): Promise<IModelList> {
    return this._request('models');
  }

  async getUserModel(): Promise<IUserModel | null> {
    return (await this._request<{ model: IUserModel | null }>('user-model'))
      .model;
  }

  async saveUserModel(settings: IUserModelSettings): Promise<IUserModel> {
    const reply = await this._request<{ model: IUserModel }>('user-model', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(settings)
    });
    return reply.model;
  }

  async deleteUserModel(): Promise<void> {
    await this._request('user-model', { method: 'DELETE' });
  }

  testUserModel(settings: IUserModelSettings): Promise<IModelTest> {
    return this._post('user-model/test', settings);
  }

  async listVariables(kernelId: string): Promise<IVariableInfo[]> {
    const reply = await this._request<{ variables: IVariableInfo[] }>(
      `kernels/${encodeURIComponent(kernelId)}/variables`
    );
    return reply.variables;
  }

  /** The websocket URL of a run's events from `since` on, with the token if needed. */
  eventsUrl(runId: string, since: number): string {
    const settings = this.serverSettings;
    let url =
      URLExt.join(
        settings.wsUrl,
        API_ROOT,
        'runs',
        encodeURIComponent(runId),
        'events'
      ) + `?since=${since}`;
    // As the kernel client does: browsers cannot set headers on a websocket, so the
    // token travels in the query when the server settings ask for it.
    if (settings.appendToken && settings.token !== '') {
      url += `&token=${encodeURIComponent(settings.token)}`;
    }
    return url;
  }

  /** Opens a websocket on a run's events; see `RunEventStream`. */
  streamEvents(
    runId: string,
    since: number,
    handlers: IRunEventStreamHandlers
  ): RunEventStream {
    return new RunEventStream(this, runId, since, handlers);
  }

  private _post<T>(path: string, body: object): Promise<T> {
    return this._request(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    });
  }

  private async _request<T>(
    path: string,
    init: RequestInit = {},
    query = ''
  ): Promise<T> {
    const settings = this.serverSettings;
    const url = URLExt.join(settings.baseUrl, API_ROOT, path) + query;
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, settings);
    } catch (error) {
      throw new DeepAnalyzeRequestError((error as Error).message, null);
    }
    const text = await response.text();
    if (!response.ok) {
      throw new DeepAnalyzeRequestError(
        errorMessage(response, text),
        response.status
      );
    }
    return (text ? JSON.parse(text) : {}) as T;
  }
}

/**
 * The readable part of an error response: Jupyter's API handlers answer
 * `{"message": ..., "reason": ...}`; anything else falls back to the HTTP status.
 */
function errorMessage(response: Response, body: string): string {
  try {
    const data = JSON.parse(body) as { message?: unknown; reason?: unknown };
    for (const value of [data.message, data.reason]) {
      if (typeof value === 'string' && value.trim()) {
        return value.trim();
      }
    }
  } catch {
    // Not JSON (a proxy's HTML error page, say): fall through to the status line.
  }
  return `${response.status} ${response.statusText || 'error'}`.trim();
}

/** How the websocket closed: its close code and reason. */
export interface IStreamClose {
  code: number;
  reason: string;
}

export interface IRunEventStreamHandlers {
  /** Called for every event, in order; replays with an old `seq` are not filtered. */
  onEvent(event: RunEvent): void;
  /** Called once when the stream gives up reconnecting, with the last close. */
  onError(close: IStreamClose): void;
}

/** Delays before reconnect attempts; the stream gives up after the last one. */
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

/**
 * A run's events over the websocket, resuming where it left off.
 *
 * The server replays every event with `seq >= since` and then streams new ones, so when
 * the connection drops before `run_finished` the stream reconnects from the event after
 * the last one it saw; a run's log is append-only, so nothing is lost or repeated.
 */
export class RunEventStream {
  constructor(
    private readonly client: DeepAnalyzeClient,
    readonly runId: string,
    since: number,
    private readonly handlers: IRunEventStreamHandlers
  ) {
    this._nextSeq = since;
    this._open();
  }

  /** `seq` of the next event expected. */
  get nextSeq(): number {
    return this._nextSeq;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    clearTimeout(this._retryTimer);
    this._socket?.close();
    this._socket = null;
  }

  private _open(): void {
    const Socket = this.client.serverSettings.WebSocket;
    const socket = new Socket(this.client.eventsUrl(this.runId, this._nextSeq));
    this._socket = socket;
    socket.onopen = () => {
      this._attempt = 0;
    };
    socket.onmessage = (message: MessageEvent) => {
      let event: unknown;
      try {
        event = JSON.parse(String(message.data));
      } catch {
        console.warn('DeepAnalyze: ignoring a non-JSON event message');
        return;
      }
      if (!isRunEvent(event)) {
        console.warn('DeepAnalyze: ignoring an unknown event', event);
        return;
      }
      this._nextSeq = Math.max(this._nextSeq, event.seq + 1);
      this.handlers.onEvent(event);
      if (event.type === 'run_finished') {
        this._finished = true;
        this.dispose();
      }
    };
    socket.onclose = (close: CloseEvent) => {
      if (this._disposed || this._finished || socket !== this._socket) {
        return;
      }
      const delay = RECONNECT_DELAYS_MS[this._attempt];
      if (delay === undefined) {
        this.dispose();
        this.handlers.onError({ code: close.code, reason: close.reason });
        return;
      }
      this._attempt += 1;
      this._retryTimer = setTimeout(() => this._open(), delay);
    };
  }

  private _socket: WebSocket | null = null;
  private _nextSeq: number;
  private _attempt = 0;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined;
  private _finished = false;
  private _disposed = false;
}
