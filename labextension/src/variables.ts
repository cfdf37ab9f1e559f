/**
 * The dataframes of the current notebook's kernel, as the sidebar lists them.
 *
 * Owns the list (`GET /deepanalyze/kernels/{id}/variables`), its error line, which
 * kernel it describes, and when it is fetched again: the current notebook changed, its
 * kernel changed, one of its cells ran, or a run ended (debounced, as "Run all" runs many
 * cells in a row); a reply for a notebook or kernel no longer current is dropped.
 *
 * Must not start runs or render anything.
 */

import { type ISignal, Signal } from '@lumino/signaling';

import { DeepAnalyzeClient, type IVariableInfo } from './api';
import type { Labels } from './labels';
import type { INotebookHost, IOpenNotebook } from './notebooks';

/** How long after the last trigger the list is fetched again. */
const REFRESH_DELAY_MS = 400;

export class KernelVariables {
  constructor(
    private readonly client: DeepAnalyzeClient,
    private readonly notebooks: INotebookHost,
    private readonly labels: Labels
  ) {
    notebooks.currentChanged.connect(this._onCurrentChanged, this);
    this._onCurrentChanged();
  }

  get items(): readonly IVariableInfo[] {
    return this._items;
  }

  get error(): string | null {
    return this._error;
  }

  /** Id of the kernel the list describes, or null without one. */
  get kernelId(): string | null {
    return this._kernelId;
  }

  /** The names listed for `kernelId`; none when the list is another kernel's. */
  namesFor(kernelId: string | null): string[] {
    return kernelId !== null && kernelId === this._kernelId
      ? this._items.map(item => item.name)
      : [];
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Fetches the list for the current notebook's kernel now. */
  async refresh(): Promise<void> {
    const kernelId = this.notebooks.current?.kernelId ?? null;
    const request = ++this._request;
    if (kernelId === null) {
      this._set([], null, null);
      return;
    }
    try {
      const items = await this.client.listVariables(kernelId);
      if (request === this._request) {
        this._set(items, null, kernelId);
      }
    } catch (error) {
      if (request === this._request) {
        this._set(
          [],
          this.labels.cannotListDataframes(this.labels.failure(error)),
          kernelId
        );
      }
    }
  }

  /** Fetches the list a moment from now, once triggers stop coming. */
  scheduleRefresh(): void {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => void this.refresh(), REFRESH_DELAY_MS);
  }

  dispose(): void {
    clearTimeout(this._timer);
    this._watched?.kernelStateChanged.disconnect(this.scheduleRefresh, this);
    this.notebooks.currentChanged.disconnect(this._onCurrentChanged, this);
    Signal.clearData(this);
  }

  private _onCurrentChanged(): void {
    const current = this.notebooks.current;
    if (this._watched !== current) {
      this._watched?.kernelStateChanged.disconnect(this.scheduleRefresh, this);
      this._watched = current;
      current?.kernelStateChanged.connect(this.scheduleRefresh, this);
    }
    this.scheduleRefresh();
  }

  private _set(
    items: IVariableInfo[],
    error: string | null,
    kernelId: string | null
  ): void {
    this._items = items;
    this._error = error;
    this._kernelId = kernelId;
    this._changed.emit();
  }

  private readonly _changed = new Signal<this, void>(this);
  private _items: IVariableInfo[] = [];
  private _error: string | null = null;
  private _kernelId: string | null = null;
  private _request = 0;
  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _watched: IOpenNotebook | null = null;
}
