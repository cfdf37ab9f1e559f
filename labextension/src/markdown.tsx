/**
 * How the model's prose and code read in the sidebar and in the `%analyze` output.
 *
 * Owns rendering Markdown through JupyterLab's own rendermime (its Markdown parser,
 * sanitizer, link handler and LaTeX typesetter) and highlighting code with the editor's
 * language registry. Model text is always rendered as untrusted, so the sanitizer strips
 * scripts and unsafe HTML; nothing here assigns model text to `innerHTML` itself.
 */

import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { renderMarkdown } from '@jupyterlab/rendermime';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import React, { useEffect, useRef } from 'react';

/**
 * The rendermime services Markdown needs: both the application's `IRenderMimeRegistry`
 * and a MIME renderer's `IRendererOptions` provide them.
 */
export type IMarkdownServices = Pick<
  IRenderMime.IRendererOptions,
  | 'sanitizer'
  | 'resolver'
  | 'linkHandler'
  | 'latexTypesetter'
  | 'markdownParser'
>;

/** Classes that give rendered Markdown JupyterLab's Markdown styles. */
export const MARKDOWN_CLASSES = 'jp-RenderedMarkdown jp-RenderedHTMLCommon';

/** The language of the model's code cells: the agent writes Python. */
const CODE_LANGUAGE = 'python';

/** Renders `source` as sanitized Markdown into `host`, replacing what it held. */
export async function renderMarkdownInto(
  host: HTMLElement,
  source: string,
  services: IMarkdownServices
): Promise<void> {
  await renderMarkdown({
    host,
    source,
    // Model output is never trusted: the sanitizer always runs.
    trusted: false,
    sanitizer: services.sanitizer,
    resolver: services.resolver,
    linkHandler: services.linkHandler,
    latexTypesetter: services.latexTypesetter,
    markdownParser: services.markdownParser ?? null,
    shouldTypeset: true
  });
}

/**
 * Writes `code` into `host` as text, highlighted (spans of text nodes) when the
 * editor's languages are available.
 */
export async function highlightCodeInto(
  host: HTMLElement,
  code: string,
  languages: IEditorLanguageRegistry | null
): Promise<void> {
  if (!languages) {
    host.textContent = code;
    return;
  }
  const highlighted = document.createElement('span');
  await languages.highlight(
    code,
    languages.findBest(CODE_LANGUAGE),
    highlighted
  );
  host.replaceChildren(...Array.from(highlighted.childNodes));
}

/**
 * Shows `text` in the element at `ref` at once, then what `render` draws from it. A
 * render still pending when `text` changes is dropped, so the newest text wins.
 */
function useRenderedText(
  ref: React.RefObject<HTMLElement>,
  text: string,
  render: (target: HTMLElement) => Promise<void>,
  deps: React.DependencyList
): void {
  useEffect(() => {
    const node = ref.current;
    if (!node) {
      return;
    }
    node.textContent = text;
    let current = true;
    const target = document.createElement('div');
    render(target)
      .then(() => {
        if (current) {
          node.replaceChildren(...Array.from(target.childNodes));
        }
      })
      .catch(reason => console.error('DeepAnalyze: cannot render', reason));
    return () => {
      current = false;
    };
  }, [text, ...deps]);
}

/** Sanitized Markdown in a `div`, rendered again only when `source` changes. */
export function Markdown(props: {
  source: string;
  services: IMarkdownServices;
  className: string;
}): React.ReactElement {
  const { source, services, className } = props;
  const host = useRef<HTMLDivElement>(null);
  useRenderedText(
    host,
    source,
    target => renderMarkdownInto(target, source, services),
    [services]
  );
  return <div ref={host} className={`${className} ${MARKDOWN_CLASSES}`} />;
}

/** Code in a `pre`, highlighted when the editor's languages are available. */
export function Code(props: {
  code: string;
  languages: IEditorLanguageRegistry | null;
  className: string;
}): React.ReactElement {
  const { code, languages, className } = props;
  const host = useRef<HTMLPreElement>(null);
  useRenderedText(
    host,
    code,
    target => highlightCodeInto(target, code, languages),
    [languages]
  );
  return <pre ref={host} className={className} />;
}
