/**
 * The conversation's parts of the sidebar: an earlier question, a run's files, its export.
 *
 * Owns the markup and accessible names of an earlier question of the notebook's
 * conversation (region `Earlier question: QUESTION`: its answer shown, its steps folded
 * under `N steps`), of the files a run wrote (region `Files`: per file `Open PATH` and
 * `Download PATH`) and of `Export report…` (`Export as HTML|PDF|Markdown`, then
 * `Exported to PATH` as a status). State lives in the run's transcript and in
 * `Conversations`; words in `labels.ts`. `panel.tsx` puts them in the sidebar.
 */

import { PathExt } from '@jupyterlab/coreutils';
import type { CommandRegistry } from '@lumino/commands';
import React from 'react';

import type { DeepAnalyzeClient, ExportFormat } from './api';
import type { Conversations } from './conversations';
import type { Labels } from './labels';
import { type IMarkdownServices, Markdown } from './markdown';
import type { RunSession } from './session';
import type { ITranscriptEntry } from './transcript';

/** `512 B`, `12.3 KB`, `4.0 MB` (powers of 1024), as the report's Files list says it. */
export function formatBytes(size: number): string {
  if (size < 1024) {
    return `${size} B`;
  }
  let value = size;
  for (const unit of ['KB', 'MB', 'GB']) {
    value /= 1024;
    if (value < 1024 || unit === 'GB') {
      return `${value.toFixed(1)} ${unit}`;
    }
  }
  return `${size} B`;
}

const EXPORT_FORMATS: readonly ExportFormat[] = ['html', 'pdf', 'markdown'];

/** What every part of a run's view needs. */
export interface IRunViewProps {
  session: RunSession;
  labels: Labels;
  commands: CommandRegistry;
  conversations: Conversations;
  client: DeepAnalyzeClient;
  markdown: IMarkdownServices;
}

/** An earlier question of the conversation: its answer, its steps folded. */
export function EarlierRun(
  props: IRunViewProps & {
    renderText(entry: ITranscriptEntry): React.ReactElement;
  }
): React.ReactElement {
  const { session, labels } = props;
  const transcript = session.transcript;
  const answers = transcript.entries.filter(e => e.kind === 'Answer');
  const steps = transcript.entries.filter(e => e.kind !== 'Answer');
  return (
    <section
      className="jp-DeepAnalyze-turn"
      data-run-id={session.runId}
      aria-label={labels.earlierQuestion(transcript.question)}
    >
      <div className="jp-DeepAnalyze-turnQuestion">{transcript.question}</div>
      <div
        className="jp-DeepAnalyze-turnStatus"
        data-status={transcript.status}
      >
        {labels.runStatus(transcript.status)}
      </div>
      {answers.map(entry => (
        <Markdown
          key={entry.step}
          className="jp-DeepAnalyze-markdown jp-DeepAnalyze-turnAnswer"
          source={entry.text}
          services={props.markdown}
        />
      ))}
      <details className="jp-DeepAnalyze-turnSteps">
        <summary>{labels.steps(steps.length)}</summary>
        <ol className="jp-DeepAnalyze-earlierSteps">
          {steps.map(entry => (
            <li
              key={entry.step}
              className="jp-DeepAnalyze-earlierStep"
              data-kind={entry.kind}
            >
              <div className="jp-DeepAnalyze-stepLabel">
                {labels.stepKind(entry.kind)}
              </div>
              {props.renderText(entry)}
            </li>
          ))}
        </ol>
      </details>
      <RunFiles {...props} />
      <RunExport {...props} />
    </section>
  );
}

/** The files a run's code wrote, with Open and Download. */
export function RunFiles(props: IRunViewProps): React.ReactElement | null {
  const { session, labels, commands, client } = props;
  const files = session.transcript.files;
  if (files.length === 0) {
    return null;
  }
  // The kernel of a notebook runs in the notebook's folder: paths are relative to it.
  const folder = PathExt.dirname(session.notebookPath);
  return (
    <section className="jp-DeepAnalyze-files" aria-label={labels.files}>
      <div className="jp-DeepAnalyze-stepLabel">{labels.files}</div>
      <ul>
        {files.map(file => {
          const path = PathExt.join(folder, file.path);
          return (
            <li
              key={file.path}
              className="jp-DeepAnalyze-file"
              data-status={file.status}
            >
              <code className="jp-DeepAnalyze-filePath">{file.path}</code>
              <span className="jp-DeepAnalyze-fileInfo">
                {labels.fileSize(
                  formatBytes(file.size),
                  labels.fileStatus(file.status)
                )}
              </span>
              <button
                className="jp-DeepAnalyze-linkButton"
                aria-label={labels.openFile(file.path)}
                onClick={() =>
                  void commands.execute('docmanager:open', { path })
                }
              >
                {labels.open}
              </button>
              <a
                className="jp-DeepAnalyze-linkButton"
                aria-label={labels.downloadFile(file.path)}
                href={client.downloadUrl(path)}
                download={PathExt.basename(file.path)}
              >
                {labels.download}
              </a>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

/** "Export report…" (HTML, PDF, Markdown) of a finished run, and what it wrote. */
export function RunExport(props: IRunViewProps): React.ReactElement | null {
  const { session, labels, commands, conversations } = props;
  if (!session.finished) {
    return null;
  }
  const exporting = conversations.exporting(session.runId);
  const result = conversations.exported(session.runId);
  return (
    <div className="jp-DeepAnalyze-export">
      <details>
        <summary>{labels.exportReport}</summary>
        {EXPORT_FORMATS.map(format => (
          <button
            key={format}
            className="jp-mod-styled"
            aria-label={labels.exportAs(labels.exportFormat(format))}
            disabled={exporting}
            onClick={() => void conversations.export(session, format)}
          >
            {labels.exportFormat(format)}
          </button>
        ))}
      </details>
      {exporting && (
        <div className="jp-DeepAnalyze-hint" role="status">
          {labels.exporting}
        </div>
      )}
      {!exporting && result?.path && (
        <div className="jp-DeepAnalyze-exported" role="status">
          {labels.exportedTo(result.path)}{' '}
          <button
            className="jp-DeepAnalyze-linkButton"
            aria-label={labels.openFile(result.path)}
            onClick={() =>
              void commands.execute('docmanager:open', { path: result.path })
            }
          >
            {labels.open}
          </button>
        </div>
      )}
      {!exporting && result?.error && (
        <div className="jp-DeepAnalyze-error" role="alert">
          {labels.exportFailed(result.error)}
        </div>
      )}
    </div>
  );
}
