/**
 * Notebooks for the materializer's tests: real shared notebook models (`YNotebook`, the
 * model a JupyterLab notebook panel edits), as a user wrote them or as a reload reads
 * them back.
 */

import { YNotebook } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';

export const RUN = '0123456789abcdef0123456789abcdef';
export const OTHER_RUN = 'fedcba9876543210fedcba9876543210';

/** A notebook the user wrote: a markdown cell and a code cell with an output. */
export function userNotebook(): YNotebook {
  return openNotebook({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3' } },
    cells: [
      {
        id: 'user-intro',
        cell_type: 'markdown',
        source: '# My analysis',
        metadata: {}
      },
      {
        id: 'user-load',
        cell_type: 'code',
        source: 'df = make_df()',
        metadata: { tags: ['setup'] },
        outputs: [{ output_type: 'stream', name: 'stdout', text: 'loaded\n' }],
        execution_count: 7
      },
      {
        id: 'user-end',
        cell_type: 'markdown',
        source: 'The end.',
        metadata: {}
      }
    ]
  });
}

/** A shared notebook model holding `content`, as JupyterLab makes when opening a file. */
export function openNotebook(content: nbformat.INotebookContent): YNotebook {
  const notebook = new YNotebook();
  notebook.fromJSON(JSON.parse(JSON.stringify(content)));
  return notebook;
}

/** What a page reload gives: the notebook read back from its saved `.ipynb` JSON. */
export function reload(notebook: YNotebook): YNotebook {
  return openNotebook(notebook.toJSON());
}

export function cellsJSON(notebook: YNotebook): nbformat.ICell[] {
  return notebook.toJSON().cells as nbformat.ICell[];
}

export function cell(notebook: YNotebook, id: string): nbformat.ICell {
  const found = cellsJSON(notebook).find(c => c.id === id);
  if (found === undefined) {
    throw new Error(`no cell ${id}`);
  }
  return found;
}
