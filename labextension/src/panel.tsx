/**
 * The "DeepAnalyze" sidebar: renders the assistant model.
 *
 * Owns the markup and the accessible names the user (and the browser tests) rely on:
 * the question box `Ask DeepAnalyze`, the `Send` and `Stop` buttons, the model picker,
 * the approval toggle, the dataframe list with its `Analyze` actions, the streaming
 * steps of the current run with Run/Skip for cells awaiting approval, and errors as
 * plain lines. State lives in `AssistantModel`; this file only renders it and forwards
 * clicks.
 */

import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import type { CommandRegistry } from '@lumino/commands';
import type { TranslationBundle } from '@jupyterlab/translation';
import { VDomRenderer } from '@jupyterlab/ui-components';
import React, { useState } from 'react';

import type { IVariableInfo } from './api';
import type { AssistantModel } from './assistant';
import { CommandIds } from './commands';
import type { ExecutionStatus, RunStatus } from './events';
import { Code, type IMarkdownServices, Markdown } from './markdown';
import type { RunSession } from './session';
import type { ITranscriptEntry, StepKind } from './transcript';

/** The sidebar widget's DOM id (stable, for layout restoration and tests). */
export const PANEL_ID = 'jp-deepanalyze-panel';

/** `m:ss` or `h:mm:ss`. */
export function formatElapsed(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return hours > 0
    ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}`
    : `${minutes}:${seconds}`;
}

function formatShape(shape: number[] | null): string {
  return shape ? shape.join(' × ') : '';
}

/** How a run's status reads, in the sidebar and in the magic's output. */
export function runStatusText(
  status: RunStatus,
  trans: TranslationBundle
): string {
  switch (status) {
    case 'running':
      return trans.__('Running');
    case 'waiting_approval':
      return trans.__('Waiting for your approval');
    case 'completed':
      return trans.__('Completed');
    case 'cancelled':
      return trans.__('Stopped');
    case 'failed':
      return trans.__('Failed');
    case 'max_rounds':
      return trans.__('Stopped after the maximum number of rounds');
  }
}

/** What the sidebar renders the model's prose and code with. */
export interface IStepDisplay {
  markdown: IMarkdownServices;
  /** The editor's languages, to highlight code; null shows it plain. */
  languages: IEditorLanguageRegistry | null;
}

export class AssistantPanel extends VDomRenderer<AssistantModel> {
  constructor(
    model: AssistantModel,
    private readonly commands: CommandRegistry,
    private readonly trans: TranslationBundle,
    private readonly display: IStepDisplay
  ) {
    super(model);
    this.id = PANEL_ID;
    this.addClass('jp-DeepAnalyze');
    this.title.caption = trans.__('DeepAnalyze');
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', trans.__('DeepAnalyze'));
  }

  dispose(): void {
    clearInterval(this._clock);
    super.dispose();
  }

  protected render(): React.ReactElement {
    const model = this.model;
    const session = model.session;
    this._tickWhile(model.busy);
    return (
      <div className="jp-DeepAnalyze-body">
        <div className="jp-DeepAnalyze-header">
          <h2 className="jp-DeepAnalyze-title">
            {this.trans.__('DeepAnalyze')}
          </h2>
          {this._renderOptions()}
        </div>
        {this._renderVariables()}
        <div className="jp-DeepAnalyze-run" role="log" aria-live="polite">
          {session ? this._renderSession(session) : this._renderIntro()}
        </div>
        {model.error && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {model.error}
          </div>
        )}
        <QuestionBox
          trans={this.trans}
          busy={model.busy}
          onSend={question => model.send(question)}
          onStop={() => void model.stop()}
        />
      </div>
    );
  }

  /** Re-renders every second while a run is in progress, for the elapsed time. */
  private _tickWhile(running: boolean): void {
    if (running && this._clock === undefined) {
      this._clock = setInterval(() => this.update(), 1000);
    } else if (!running && this._clock !== undefined) {
      clearInterval(this._clock);
      this._clock = undefined;
    }
  }

  private _renderOptions(): React.ReactElement {
    const model = this.model;
    const trans = this.trans;
    return (
      <div className="jp-DeepAnalyze-options">
        <label className="jp-DeepAnalyze-option">
          <span>{trans.__('Model')}</span>
          <select
            className="jp-mod-styled"
            aria-label={trans.__('Model')}
            value={model.selectedModel}
            disabled={model.busy || model.models.length === 0}
            onChange={event => (model.selectedModel = event.target.value)}
          >
            {model.models.map(info => (
              <option
                key={info.spec}
                value={info.spec}
                disabled={!info.available}
              >
                {info.available
                  ? info.name
                  : trans.__('%1 (unavailable)', info.name)}
              </option>
            ))}
          </select>
        </label>
        {model.modelsError && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {model.modelsError}
          </div>
        )}
        <label className="jp-DeepAnalyze-option">
          <input
            type="checkbox"
            aria-label={trans.__('Ask before running code')}
            checked={model.approval === 'manual'}
            disabled={model.busy}
            onChange={event =>
              (model.approval = event.target.checked ? 'manual' : 'auto')
            }
          />
          <span>{trans.__('Ask before running code')}</span>
        </label>
      </div>
    );
  }

  private _renderVariables(): React.ReactElement {
    const model = this.model;
    const trans = this.trans;
    let body: React.ReactNode;
    if (model.variablesError) {
      body = <div className="jp-DeepAnalyze-error">{model.variablesError}</div>;
    } else if (model.variablesKernelId === null) {
      body = (
        <div className="jp-DeepAnalyze-hint">
          {trans.__(
            'Open a notebook with a running kernel to see its dataframes.'
          )}
        </div>
      );
    } else if (model.variables.length === 0) {
      body = (
        <div className="jp-DeepAnalyze-hint">
          {trans.__('No dataframes in this kernel yet.')}
        </div>
      );
    } else {
      body = (
        <ul
          className="jp-DeepAnalyze-variables"
          aria-label={trans.__('Dataframes')}
        >
          {model.variables.map(variable => this._renderVariable(variable))}
        </ul>
      );
    }
    return (
      <section className="jp-DeepAnalyze-section">
        <div className="jp-DeepAnalyze-sectionHeader">
          <h3>{trans.__('Dataframes')}</h3>
          <button
            className="jp-DeepAnalyze-linkButton"
            aria-label={trans.__('Refresh dataframes')}
            title={trans.__('Refresh dataframes')}
            onClick={() => void model.refreshVariables()}
          >
            ↻
          </button>
        </div>
        {body}
      </section>
    );
  }

  private _renderVariable(variable: IVariableInfo): React.ReactElement {
    const trans = this.trans;
    const columns = variable.columns
      .map(c => `${c.name}: ${c.dtype}`)
      .join(', ');
    return (
      <li
        key={variable.name}
        className="jp-DeepAnalyze-variable"
        title={columns}
      >
        <code className="jp-DeepAnalyze-variableName">{variable.name}</code>
        <span className="jp-DeepAnalyze-variableInfo">
          {variable.type} {formatShape(variable.shape)}
        </span>
        <button
          className="jp-mod-styled jp-DeepAnalyze-analyze"
          aria-label={trans.__('Analyze %1', variable.name)}
          disabled={this.model.busy}
          onClick={() =>
            void this.commands.execute(CommandIds.analyzeDataframe, {
              name: variable.name
            })
          }
        >
          {trans.__('Analyze')}
        </button>
      </li>
    );
  }

  private _renderIntro(): React.ReactElement {
    return (
      <div className="jp-DeepAnalyze-hint">
        {this.trans.__(
          'Ask a question about your data. DeepAnalyze plans, writes and runs code cells in the active notebook, then writes a report.'
        )}
      </div>
    );
  }

  private _kindText(kind: StepKind): string {
    const trans = this.trans;
    switch (kind) {
      case 'Analyze':
        return trans.__('Analyze');
      case 'Understand':
        return trans.__('Understand');
      case 'Code':
        return trans.__('Code');
      case 'Answer':
        return trans.__('Answer');
      case 'Note':
        return trans.__('Note');
      case 'Status':
        return trans.__('Status');
    }
  }

  private _executionText(status: ExecutionStatus): string {
    const trans = this.trans;
    switch (status) {
      case 'ok':
        return trans.__('ran');
      case 'error':
        return trans.__('error');
      case 'timeout':
        return trans.__('timed out');
      case 'interrupted':
        return trans.__('interrupted');
      case 'skipped':
        return trans.__('skipped');
      case 'dead':
        return trans.__('the kernel died');
    }
  }

  private _renderSession(session: RunSession): React.ReactElement {
    const trans = this.trans;
    const transcript = session.transcript;
    const end = session.finishedAt ?? Date.now();
    // A failed run's status step says what its alert says: the alert shows it once.
    const failed = transcript.status === 'failed' && !!transcript.error;
    return (
      <>
        {transcript.question && (
          <div className="jp-DeepAnalyze-question">{transcript.question}</div>
        )}
        <div className="jp-DeepAnalyze-status" data-status={transcript.status}>
          <span className="jp-DeepAnalyze-statusText">
            {runStatusText(transcript.status, this.trans)}
          </span>
          <span
            className="jp-DeepAnalyze-elapsed"
            aria-label={trans.__('Elapsed time')}
          >
            {formatElapsed(end - session.startedAt)}
          </span>
          {transcript.model && (
            <span className="jp-DeepAnalyze-model">{transcript.model}</span>
          )}
        </div>
        {!session.attached && !session.finished && (
          <div className="jp-DeepAnalyze-hint">
            {trans.__(
              'The notebook %1 is not open: its cells will be added when it is opened.',
              session.notebookPath
            )}
          </div>
        )}
        <ol className="jp-DeepAnalyze-steps">
          {transcript.entries
            .filter(entry => !(failed && entry.kind === 'Status'))
            .map(entry => this._renderEntry(entry))}
        </ol>
        {failed && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {trans.__('Error: %1', transcript.error)}
          </div>
        )}
        {session.streamError && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {trans.__(
              "Lost the connection to the run's events (%1). Reload the page to reconnect.",
              [session.streamError.code, session.streamError.reason]
                .filter(Boolean)
                .join(': ')
            )}
          </div>
        )}
      </>
    );
  }

  private _renderText(entry: ITranscriptEntry): React.ReactElement {
    if (entry.kind === 'Code') {
      return entry.streaming ? (
        <pre className="jp-DeepAnalyze-code">{entry.text}</pre>
      ) : (
        <Code
          className="jp-DeepAnalyze-code"
          code={entry.text}
          languages={this.display.languages}
        />
      );
    }
    // Markdown half-streamed would jump about as it parses: plain until it is complete.
    return entry.streaming ? (
      <div className="jp-DeepAnalyze-text">{entry.text}</div>
    ) : (
      <Markdown
        className="jp-DeepAnalyze-markdown"
        source={entry.text}
        services={this.display.markdown}
      />
    );
  }

  private _renderEntry(entry: ITranscriptEntry): React.ReactElement {
    const trans = this.trans;
    const execution = entry.execution;
    const cellId = entry.cellId;
    return (
      <li
        key={entry.step}
        className="jp-DeepAnalyze-step"
        data-kind={entry.kind}
        data-streaming={entry.streaming ? 'true' : undefined}
      >
        <div className="jp-DeepAnalyze-stepLabel">
          {this._kindText(entry.kind)}
        </div>
        {this._renderText(entry)}
        {execution && (
          <div
            className="jp-DeepAnalyze-execution"
            data-status={execution.status}
          >
            {execution.executionCount !== null &&
              `[${execution.executionCount}] `}
            {this._executionText(execution.status)}
            {execution.feedback && (
              <details>
                <summary>{trans.__('Output')}</summary>
                <pre>{execution.feedback}</pre>
              </details>
            )}
          </div>
        )}
        {entry.approvalCode !== null && cellId !== undefined && (
          <div className="jp-DeepAnalyze-approval">
            <div className="jp-DeepAnalyze-hint">
              {trans.__(
                'This cell has not run. Edit it in the notebook if you like, then Run or Skip it.'
              )}
            </div>
            <button
              className="jp-mod-styled jp-mod-accept"
              aria-label={trans.__('Run')}
              onClick={() => void this.model.decide(cellId, 'run')}
            >
              {trans.__('Run')}
            </button>
            <button
              className="jp-mod-styled"
              aria-label={trans.__('Skip')}
              onClick={() => void this.model.decide(cellId, 'skip')}
            >
              {trans.__('Skip')}
            </button>
            <button
              className="jp-DeepAnalyze-linkButton"
              aria-label={trans.__('Show cell')}
              onClick={() => void this.model.revealCell(cellId)}
            >
              {trans.__('Show cell')}
            </button>
          </div>
        )}
      </li>
    );
  }

  private _clock: ReturnType<typeof setInterval> | undefined;
}

interface IQuestionBoxProps {
  trans: TranslationBundle;
  busy: boolean;
  /** Resolves with the run id, or null when the run did not start. */
  onSend(question: string): Promise<string | null>;
  onStop(): void;
}

/** The question box keeps its own draft so that re-renders never lose typing. */
function QuestionBox(props: IQuestionBoxProps): React.ReactElement {
  const { trans, busy } = props;
  const [draft, setDraft] = useState('');
  const send = async () => {
    if (busy || !draft.trim()) {
      return;
    }
    // The draft is cleared only once the run started, so a failed Send loses nothing.
    if ((await props.onSend(draft)) !== null) {
      setDraft('');
    }
  };
  return (
    <div className="jp-DeepAnalyze-ask">
      <textarea
        className="jp-DeepAnalyze-question-input"
        aria-label={trans.__('Ask DeepAnalyze')}
        placeholder={trans.__('Ask a question about your data…')}
        rows={3}
        value={draft}
        onChange={event => setDraft(event.target.value)}
        onKeyDown={event => {
          // Enter sends, Shift+Enter starts a new line, as in chat boxes.
          if (event.key === 'Enter' && !event.shiftKey) {
            event.preventDefault();
            void send();
          }
        }}
      />
      <div className="jp-DeepAnalyze-askButtons">
        <button
          className="jp-mod-styled jp-mod-accept"
          aria-label={trans.__('Send')}
          disabled={busy || !draft.trim()}
          onClick={() => void send()}
        >
          {trans.__('Send')}
        </button>
        <button
          className="jp-mod-styled jp-mod-warn"
          aria-label={trans.__('Stop')}
          disabled={!busy}
          onClick={props.onStop}
        >
          {trans.__('Stop')}
        </button>
      </div>
    </div>
  );
}
