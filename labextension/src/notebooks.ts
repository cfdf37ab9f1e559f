/**
 * The open notebooks as the assistant sees them.
 *
 * Owns `IOpenNotebook` and `INotebookHost`, the small surface through which the run
 * controller and the dataframe list reach notebooks (its path, kernel, active cell,
 * shared model, renames and closing; the current one, finding one by path, opening
 * one), `notebookTarget` (the shared model of a panel, which the materializer edits),
 * and `LabNotebooks`, which gives that surface over JupyterLab's notebook tracker and
 * document manager. Unit tests give it over plain shared models instead.
 *
 * Must not decide anything about runs: it only finds, opens and describes notebooks.
 */

import type { IDocumentManager } from '@jupyterlab/docmanager';
import {
  type INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { type ISignal, Signal } from '@lumino/signaling';

import type { INotebookTarget } from './runCells';

/** One open notebook. */
export interface IOpenNotebook {
  /** Its path, which a rename changes. */
  readonly path: string;
  /** Id of its widget (what JupyterLab's notebook commands take as `semanticWidget`). */
  readonly widgetId: string;
  /** Id of its kernel, or null without one (known once `ready` resolved). */
  readonly kernelId: string | null;
  /** Id of its active cell, or null. */
  readonly activeCellId: string | null;
  /** Its shared model, which runs are materialized into. */
  readonly target: INotebookTarget;
  readonly isClosed: boolean;
  /** Resolves when its content is loaded (its cells can be edited). */
  contentReady(): Promise<void>;
  /** Resolves when its content and its kernel session are ready. */
  ready(): Promise<void>;
  /** Activates one of its cells and scrolls to it. */
  revealCell(cellId: string): Promise<void>;
  /** Emits the new path after a rename. */
  readonly pathChanged: ISignal<IOpenNotebook, string>;
  /** Emits once when it is closed. */
  readonly closed: ISignal<IOpenNotebook, void>;
  /** Emits when its kernel changes or one of its cells was run. */
  readonly kernelStateChanged: ISignal<IOpenNotebook, void>;
}

/** The notebooks open in this page. */
export interface INotebookHost {
  /** The notebook the user works in, or null. */
  readonly current: IOpenNotebook | null;
  readonly currentChanged: ISignal<INotebookHost, IOpenNotebook | null>;
  /** Emits a notebook that was just opened (or reopened). */
  readonly opened: ISignal<INotebookHost, IOpenNotebook>;
  /** Resolves once the notebooks of the restored layout are open. */
  readonly restored: Promise<void>;
  /** Every open notebook, the current one first. */
  all(): IOpenNotebook[];
  find(path: string): IOpenNotebook | undefined;
  /** Opens (or reveals) the notebook at `path`; undefined if it is not a notebook. */
  open(path: string): IOpenNotebook | undefined;
}

/** The shared notebook model of a notebook panel, which the materializer edits. */
export function notebookTarget(panel: NotebookPanel): INotebookTarget {
  return panel.context.model.sharedModel;
}

/** A notebook panel as an `IOpenNotebook`. */
class PanelNotebook implements IOpenNotebook {
  constructor(
    readonly panel: NotebookPanel,
    private readonly docManager: IDocumentManager
  ) {
    panel.context.pathChanged.connect((_, path) =>
      this._pathChanged.emit(path)
    );
    panel.disposed.connect(() => {
      this._closed.emit();
      Signal.clearData(this);
    });
    panel.sessionContext.kernelChanged.connect(() =>
      this._kernelStateChanged.emit()
    );
  }

  get path(): string {
    return this.panel.context.path;
  }

  get widgetId(): string {
    return this.panel.id;
  }

  get kernelId(): string | null {
    return this.panel.sessionContext.session?.kernel?.id ?? null;
  }

  get activeCellId(): string | null {
    return this.panel.content.activeCell?.model.id ?? null;
  }

  get target(): INotebookTarget {
    return notebookTarget(this.panel);
  }

  get isClosed(): boolean {
    return this.panel.isDisposed;
  }

  async contentReady(): Promise<void> {
    await this.panel.context.ready;
  }

  async ready(): Promise<void> {
    await this.panel.context.ready;
    await this.panel.sessionContext.ready;
  }

  async revealCell(cellId: string): Promise<void> {
    const notebook = this.panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      return;
    }
    this.docManager.openOrReveal(this.path);
    notebook.activeCellIndex = index;
    await notebook.scrollToCell(notebook.widgets[index]);
  }

  /** A cell of this notebook was run. */
  cellExecuted(): void {
    this._kernelStateChanged.emit();
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

/** JupyterLab's notebooks (tracker and document manager) as an `INotebookHost`. */
export class LabNotebooks implements INotebookHost {
  constructor(
    private readonly tracker: INotebookTracker,
    private readonly docManager: IDocumentManager
  ) {
    tracker.currentChanged.connect((_, panel) =>
      this._currentChanged.emit(panel ? this.of(panel) : null)
    );
    tracker.widgetAdded.connect((_, panel) =>
      this._opened.emit(this.of(panel))
    );
    NotebookActions.executed.connect((_, { notebook }) => {
      const panel = tracker.find(p => p.content === notebook);
      if (panel) {
        this.of(panel).cellExecuted();
      }
    });
  }

  /** The same wrapper for the same panel, so that notebooks compare by identity. */
  of(panel: NotebookPanel): PanelNotebook {
    let notebook = this._wrappers.get(panel);
    if (notebook === undefined) {
      notebook = new PanelNotebook(panel, this.docManager);
      this._wrappers.set(panel, notebook);
    }
    return notebook;
  }

  get current(): IOpenNotebook | null {
    const panel = this.tracker.currentWidget;
    return panel ? this.of(panel) : null;
  }

  get currentChanged(): ISignal<INotebookHost, IOpenNotebook | null> {
    return this._currentChanged;
  }

  get opened(): ISignal<INotebookHost, IOpenNotebook> {
    return this._opened;
  }

  get restored(): Promise<void> {
    return this.tracker.restored;
  }

  all(): IOpenNotebook[] {
    const current = this.current;
    const others: IOpenNotebook[] = [];
    this.tracker.forEach(panel => {
      if (panel !== this.tracker.currentWidget) {
        others.push(this.of(panel));
      }
    });
    return current ? [current, ...others] : others;
  }

  find(path: string): IOpenNotebook | undefined {
    const panel = this.tracker.find(p => p.context.path === path);
    return panel ? this.of(panel) : undefined;
  }

  open(path: string): IOpenNotebook | undefined {
    const widget = this.docManager.openOrReveal(path);
    return widget instanceof NotebookPanel ? this.of(widget) : undefined;
  }

  private readonly _wrappers = new WeakMap<NotebookPanel, PanelNotebook>();
  private readonly _currentChanged = new Signal<
    INotebookHost,
    IOpenNotebook | null
  >(this);
  private readonly _opened = new Signal<INotebookHost, IOpenNotebook>(this);
}
