/**
 * The MIME renderer of the `%analyze` magic's output (`application/vnd.deepanalyze.run+json`).
 *
 * Owns how a finished or partial run reads inside an output area: the question and
 * status, then each cell the run made (prose, code and a plain summary of its outputs),
 * and the "Insert as cells" button, which materializes the same events into the
 * notebook below the cell holding this output.
 *
 * The cells shown are exactly the ones "Insert as cells" would create: both come from
 * `RunMaterializer`, here over an in-memory notebook model. Prose reads as Markdown
 * rendered untrusted through the notebook's rendermime (so sanitized), code as text
 * nodes (highlighted when the editor's languages are there), outputs as text and images
 * as data URLs, so the renderer is safe on untrusted notebooks.
 */

import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import type * as nbformat from '@jupyterlab/nbformat';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { type IRunBundle, parseRunBundle, RUN_MIME_TYPE } from './events';
import type { Labels } from './labels';
import { previewCells, RunMaterializer } from './materializer';
import {
  highlightCodeInto,
  type IMarkdownServices,
  MARKDOWN_CLASSES,
  renderMarkdownInto
} from './markdown';
import { notebookTarget } from './notebooks';
import {
  cellProvenance,
  type ITargetCell,
  type ITargetCodeCell
} from './runCells';
import { RunTranscript } from './transcript';

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function multiline(value: unknown): string {
  if (Array.isArray(value)) {
    return value.join('');
  }
  return typeof value === 'string' ? value : '';
}

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif'];

/** A plain, safe rendering of one nbformat output. */
function renderOutput(output: nbformat.IOutput): HTMLElement {
  switch (output.output_type) {
    case 'stream':
      return element('pre', 'jp-DeepAnalyzeRun-stream', multiline(output.text));
    case 'error':
      return element(
        'pre',
        'jp-DeepAnalyzeRun-errorOutput',
        `${String(output.ename)}: ${String(output.evalue)}`
      );
    default: {
      const data = (output.data ?? {}) as Record<string, unknown>;
      const image = IMAGE_TYPES.find(type => typeof data[type] === 'string');
      if (image) {
        const img = element('img', 'jp-DeepAnalyzeRun-image');
        img.src = `data:${image};base64,${multiline(data[image]).replace(/\s/g, '')}`;
        img.alt = multiline(data['text/plain']);
        return img;
      }
      if (data['text/plain'] !== undefined) {
        return element(
          'pre',
          'jp-DeepAnalyzeRun-result',
          multiline(data['text/plain'])
        );
      }
      return element(
        'div',
        'jp-DeepAnalyzeRun-result',
        `[${Object.keys(data).join(', ')}]`
      );
    }
  }
}

export interface IRunRendererContext {
  tracker: INotebookTracker;
  labels: Labels;
  /** The editor's languages, to highlight code; null shows it plain. */
  languages: IEditorLanguageRegistry | null;
}

export class RunOutputRenderer extends Widget implements IRenderMime.IRenderer {
  /** `markdown`: the rendermime services of the output area this renders in. */
  constructor(
    private readonly context: IRunRendererContext,
    private readonly markdown: IMarkdownServices
  ) {
    super();
    this.addClass('jp-DeepAnalyzeRun');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const labels = this.context.labels;
    this.node.textContent = '';
    let bundle: IRunBundle;
    try {
      bundle = parseRunBundle(model.data[RUN_MIME_TYPE]);
    } catch (error) {
      this.node.appendChild(
        element(
          'div',
          'jp-DeepAnalyze-error',
          labels.cannotShowOutput((error as Error).message)
        )
      );
      return;
    }
    const transcript = new RunTranscript(bundle.run_id);
    transcript.applyAll(bundle.events);
    const cells = previewCells(bundle);

    const header = element('div', 'jp-DeepAnalyzeRun-header');
    header.appendChild(
      element(
        'div',
        'jp-DeepAnalyzeRun-question',
        transcript.question || labels.runOutputTitle
      )
    );
    header.appendChild(
      element(
        'span',
        'jp-DeepAnalyzeRun-status',
        transcript.finished
          ? labels.runStatus(transcript.status)
          : labels.inProgress
      )
    );
    const insert = element('button', 'jp-mod-styled jp-DeepAnalyzeRun-insert');
    insert.textContent = labels.insertAsCells;
    insert.setAttribute('aria-label', labels.insertAsCells);
    insert.disabled = cells.length === 0;
    const notice = element('span', 'jp-DeepAnalyzeRun-notice');
    notice.setAttribute('role', 'status');
    insert.addEventListener('click', () => {
      notice.textContent = this._insert(bundle);
    });
    header.append(insert, notice);
    this.node.appendChild(header);

    if (transcript.error) {
      const error = element(
        'div',
        'jp-DeepAnalyze-error',
        labels.error(transcript.error)
      );
      error.setAttribute('role', 'alert');
      this.node.appendChild(error);
    }

    const list = element('ol', 'jp-DeepAnalyzeRun-cells');
    const rendering: Promise<void>[] = [];
    for (const cell of cells) {
      list.appendChild(this._renderCell(cell, rendering));
    }
    this.node.appendChild(list);
    await Promise.all(rendering);
  }

  /** The cell's item; pushes onto `rendering` what is still drawing into it. */
  private _renderCell(
    cell: ITargetCell,
    rendering: Promise<void>[]
  ): HTMLElement {
    const item = element('li', 'jp-DeepAnalyzeRun-cell');
    const role = cellProvenance(cell)?.role;
    item.dataset.role = role ?? cell.cell_type;
    item.appendChild(
      element(
        'div',
        'jp-DeepAnalyzeRun-role',
        this.context.labels.cellRole(role)
      )
    );
    if (cell.cell_type === 'code') {
      const code = cell as ITargetCodeCell;
      const prompt =
        code.execution_count === null ? ' ' : String(code.execution_count);
      const pre = element('pre', 'jp-DeepAnalyzeRun-code');
      const source = element('span', 'jp-DeepAnalyzeRun-source');
      pre.append(
        element('span', 'jp-DeepAnalyzeRun-prompt', `[${prompt}]: `),
        source
      );
      item.appendChild(pre);
      rendering.push(
        highlightCodeInto(source, code.getSource(), this.context.languages)
      );
      for (const output of code.getOutputs()) {
        item.appendChild(renderOutput(output));
      }
    } else {
      const text = element('div', `jp-DeepAnalyzeRun-text ${MARKDOWN_CLASSES}`);
      item.appendChild(text);
      rendering.push(renderMarkdownInto(text, cell.getSource(), this.markdown));
    }
    return item;
  }

  /** Materializes the run below this output's cell; returns what to tell the user. */
  private _insert(bundle: IRunBundle): string {
    const { tracker, labels } = this.context;
    const panel: NotebookPanel | null =
      tracker.find(p => p.node.contains(this.node)) ?? tracker.currentWidget;
    if (!panel) {
      return labels.openNotebookToInsert;
    }
    // Below the cell that holds this output; outside a notebook (an output view),
    // below the active cell of the current notebook.
    const cell =
      panel.content.widgets.find(c => c.node.contains(this.node)) ??
      panel.content.activeCell;
    const materializer = new RunMaterializer(notebookTarget(panel), {
      runId: bundle.run_id,
      anchorCellId: cell?.model.id ?? null
    });
    materializer.applyAll(bundle.events);
    // Pressed again, the cells are adopted (rebuilt from the events), not doubled.
    return materializer.created === 0 && materializer.adopted > 0
      ? labels.cellsAlreadyThere(materializer.adopted)
      : labels.cellsInserted(materializer.created);
  }
}

/**
 * Rank of the run renderer: below JupyterLab's HTML renderer (50), so that JupyterLab
 * shows the run rather than the bundle's `text/html` fallback (on equal ranks the
 * renderer registered first, HTML, would win).
 */
export const RUN_RENDERER_RANK = 40;

/** The factory registered with the application's rendermime registry. */
export function runRendererFactory(
  context: IRunRendererContext
): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [RUN_MIME_TYPE],
    defaultRank: RUN_RENDERER_RANK,
    createRenderer: options => new RunOutputRenderer(context, options)
  };
}
