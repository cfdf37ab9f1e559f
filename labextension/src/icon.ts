/**
 * The DeepAnalyze icon (sidebar tab, toolbar button, settings), themed through
 * JupyterLab's `jp-icon3` class so it follows light and dark themes.
 */

import { LabIcon } from '@jupyterlab/ui-components';

export const DEEPANALYZE_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 19h16v2H4z"/>
    <path d="M5 11h3v7H5zM10.5 7h3v11h-3zM16 13h3v5h-3z"/>
    <path d="M17.5 2.5l.9 2.1 2.1.9-2.1.9-.9 2.1-.9-2.1-2.1-.9 2.1-.9z"/>
  </g>
</svg>`;

export const deepAnalyzeIcon = new LabIcon({
  name: 'jupyter-deepanalyze:icon',
  svgstr: DEEPANALYZE_SVG
});
