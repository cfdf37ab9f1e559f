/**
 * The "DeepAnalyze" sidebar: renders the assistant model.
 *
 * Owns the markup and the accessible names the user (and the browser tests) rely on:
 * the model picker, the approval toggle, the dataframe list with its `Analyze` actions,
 * the notebook's conversation as a thread (earlier questions, `thread.tsx`; the current
 * run's streaming steps, each collapsible, with Run/Skip for cells awaiting approval;
 * its files and `Export report…`), `New conversation`, the question box
 * (`questionBox.tsx`) and errors as plain lines. State lives in `AssistantModel`, words
 * in `labels.ts`; this file only renders them and forwards clicks.
 */

import type { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import type { CommandRegistry } from '@lumino/commands';
import { VDomRenderer } from '@jupyterlab/ui-components';
import React from 'react';

import type { IVariableInfo } from './api';
import type { AssistantModel } from './assistant';
import { CommandIds } from './commands';
import type { Labels } from './labels';
import { Code, type IMarkdownServices, Markdown } from './markdown';
import { QuestionBox } from './questionBox';
import type { RunSession } from './session';
import { EarlierRun, type IRunViewProps, RunExport, RunFiles } from './thread';
import type { ITranscriptEntry } from './transcript';

/** JupyterLab's command that restarts a notebook's kernel (Kernel › Restart Kernel…). */
const RESTART_KERNEL_COMMAND = 'notebook:restart-kernel';

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
    private readonly labels: Labels,
    private readonly display: IStepDisplay
  ) {
    super(model);
    this.id = PANEL_ID;
    this.addClass('jp-DeepAnalyze');
    this.title.caption = labels.deepAnalyze;
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', labels.deepAnalyze);
  }

  dispose(): void {
    clearInterval(this._clock);
    super.dispose();
  }

  protected render(): React.ReactElement {
    const model = this.model;
    const session = model.runs.session;
    this._tickWhile(model.busy);
    return (
      <div className="jp-DeepAnalyze-body">
        <div className="jp-DeepAnalyze-header">
          <h2 className="jp-DeepAnalyze-title">{this.labels.deepAnalyze}</h2>
          {this._renderOptions()}
        </div>
        {this._renderVariables()}
        <div className="jp-DeepAnalyze-run" role="log" aria-live="polite">
          {this._renderThread(session)}
        </div>
        {model.runs.error && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {model.runs.error}
          </div>
        )}
        <QuestionBox
          labels={this.labels}
          busy={model.busy}
          onSend={question => model.send(question)}
          onStop={() => void model.runs.stop()}
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
    const labels = this.labels;
    return (
      <div className="jp-DeepAnalyze-options">
        <label className="jp-DeepAnalyze-option">
          <span>{labels.model}</span>
          <select
            className="jp-mod-styled"
            aria-label={labels.model}
            value={model.selectedModel}
            disabled={model.busy || model.models.length === 0}
            onChange={event => (model.selectedModel = event.target.value)}
          >
            {model.models.map(info => (
              <option
                key={info.spec}
                value={info.spec}
                disabled={!info.available}
                title={info.error ? `${info.spec}: ${info.error}` : info.spec}
              >
                {info.available
                  ? info.name || info.spec
                  : labels.unavailableModel(info.name || info.spec)}
              </option>
            ))}
          </select>
          {model.userModels && (
            <button
              className="jp-DeepAnalyze-linkButton"
              aria-label={labels.modelSettings}
              title={labels.modelSettings}
              disabled={model.busy}
              onClick={() =>
                void this.commands.execute(CommandIds.modelSettings)
              }
            >
              ⚙
            </button>
          )}
        </label>
        {model.models
          .filter(info => !info.available && info.error)
          .map(info => (
            <div
              key={info.spec}
              className="jp-DeepAnalyze-hint jp-DeepAnalyze-modelProblem"
            >
              {labels.unavailableReason(info.name || info.spec, info.error!)}
            </div>
          ))}
        {model.modelsError && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {model.modelsError}
          </div>
        )}
        <label className="jp-DeepAnalyze-option">
          <input
            type="checkbox"
            aria-label={labels.askBeforeRunning}
            checked={model.approval === 'manual'}
            disabled={model.busy}
            onChange={event =>
              (model.approval = event.target.checked ? 'manual' : 'auto')
            }
          />
          <span>{labels.askBeforeRunning}</span>
        </label>
      </div>
    );
  }

  private _renderVariables(): React.ReactElement {
    const variables = this.model.variables;
    const labels = this.labels;
    let body: React.ReactNode;
    if (variables.error) {
      body = <div className="jp-DeepAnalyze-error">{variables.error}</div>;
    } else if (variables.kernelId === null) {
      body = <div className="jp-DeepAnalyze-hint">{labels.noKernel}</div>;
    } else if (variables.items.length === 0) {
      body = <div className="jp-DeepAnalyze-hint">{labels.noDataframes}</div>;
    } else {
      body = (
        <ul className="jp-DeepAnalyze-variables" aria-label={labels.dataframes}>
          {variables.items.map(variable => this._renderVariable(variable))}
        </ul>
      );
    }
    return (
      <section className="jp-DeepAnalyze-section">
        <div className="jp-DeepAnalyze-sectionHeader">
          <h3>{labels.dataframes}</h3>
          <button
            className="jp-DeepAnalyze-linkButton"
            aria-label={labels.refreshDataframes}
            title={labels.refreshDataframes}
            onClick={() => void variables.refresh()}
          >
            ↻
          </button>
        </div>
        {body}
      </section>
    );
  }

  private _renderVariable(variable: IVariableInfo): React.ReactElement {
    const labels = this.labels;
    const columns = variable.columns
      .map(c => `${c.name}: ${c.dtype}`)
      .join(', ');
    return (
      <li
        key={variable.name}
        className="jp-DeepAnalyze-variable"
        title={`${variable.type}: ${columns}`}
      >
        <code className="jp-DeepAnalyze-variableName">{variable.name}</code>
        <span className="jp-DeepAnalyze-variableInfo">
          {shortType(variable.type)} {formatShape(variable.shape)}
        </span>
        <button
          className="jp-mod-styled jp-DeepAnalyze-analyze"
          aria-label={labels.analyzeName(variable.name)}
          disabled={this.model.busy}
          onClick={() =>
            void this.commands.execute(CommandIds.analyzeDataframe, {
              name: variable.name
            })
          }
        >
          {labels.analyze}
        </button>
      </li>
    );
  }

  private _renderIntro(): React.ReactElement {
    return <div className="jp-DeepAnalyze-hint">{this.labels.intro}</div>;
  }

  /**
   * The conversation of the notebook shown: earlier questions (their answers shown,
   * their steps folded), then the latest run in full.
   */
  private _renderThread(current: RunSession | null): React.ReactElement {
    const model = this.model;
    const path = model.threadPath;
    let runs = path !== null ? model.conversations.thread(path) : [];
    if (current && !runs.includes(current) && current.notebookPath === path) {
      runs = [...runs, current];
    }
    const last = runs[runs.length - 1];
    if (last === undefined) {
      return current ? this._renderSession(current) : this._renderIntro();
    }
    return (
      <>
        {runs.slice(0, -1).map(session => (
          <EarlierRun
            key={session.runId}
            {...this._threadProps(session)}
            renderText={entry => this._renderText(entry)}
          />
        ))}
        {this._renderSession(last)}
        {last.finished && !model.busy && (
          <div className="jp-DeepAnalyze-conversation">
            <span className="jp-DeepAnalyze-hint">
              {this.labels.followUpHint}
            </span>
            <button
              className="jp-mod-styled"
              aria-label={this.labels.newConversation}
              onClick={() => model.newConversation()}
            >
              {this.labels.newConversation}
            </button>
          </div>
        )}
      </>
    );
  }

  private _renderSession(session: RunSession): React.ReactElement {
    const labels = this.labels;
    const transcript = session.transcript;
    const end = session.finishedAt ?? Date.now();
    // A failed run's status step says what its alert says: the alert shows it once (so
    // does a cancel whose code kept the kernel busy).
    const failed =
      (transcript.status === 'failed' || transcript.status === 'cancelled') &&
      !!transcript.error;
    return (
      <>
        {transcript.question && (
          <div className="jp-DeepAnalyze-question">{transcript.question}</div>
        )}
        <div className="jp-DeepAnalyze-status" data-status={transcript.status}>
          <span className="jp-DeepAnalyze-statusText">
            {labels.runStatus(transcript.status)}
          </span>
          <span
            className="jp-DeepAnalyze-elapsed"
            aria-label={labels.elapsedTime}
          >
            {formatElapsed(end - session.startedAt)}
          </span>
          {transcript.model && (
            <span className="jp-DeepAnalyze-model">{transcript.model}</span>
          )}
        </div>
        {!session.attached && !session.finished && (
          <div className="jp-DeepAnalyze-hint">
            {labels.notebookNotOpen(session.notebookPath)}
          </div>
        )}
        <ol className="jp-DeepAnalyze-steps">
          {transcript.entries
            .filter(entry => !(failed && entry.kind === 'Status'))
            .map(entry => this._renderEntry(entry))}
        </ol>
        {failed && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {labels.error(transcript.error ?? '')}
          </div>
        )}
        {session.finished && transcript.kernelUnresponsive && (
          <div className="jp-DeepAnalyze-unresponsive">
            <button
              className="jp-mod-styled jp-mod-warn"
              aria-label={labels.restartKernel}
              title={labels.kernelUnresponsive}
              onClick={() => void this._restartKernel()}
            >
              {labels.restartKernel}
            </button>
          </div>
        )}
        {session.streamError && (
          <div className="jp-DeepAnalyze-error" role="alert">
            {labels.streamLost(
              [session.streamError.code, session.streamError.reason]
                .filter(Boolean)
                .join(': ')
            )}
          </div>
        )}
        <RunFiles {...this._threadProps(session)} />
        <RunExport {...this._threadProps(session)} />
      </>
    );
  }

  private _threadProps(session: RunSession): IRunViewProps {
    return {
      session,
      labels: this.labels,
      commands: this.commands,
      conversations: this.model.conversations,
      client: this.model.client,
      markdown: this.display.markdown
    };
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
    const labels = this.labels;
    const runs = this.model.runs;
    const execution = entry.execution;
    const cellId = entry.cellId;
    return (
      <li
        key={entry.step}
        className="jp-DeepAnalyze-step"
        data-kind={entry.kind}
        data-streaming={entry.streaming ? 'true' : undefined}
      >
        <details className="jp-DeepAnalyze-stepBody" open>
          <summary className="jp-DeepAnalyze-stepLabel">
            {labels.stepKind(entry.kind)}
          </summary>
          {this._renderText(entry)}
        </details>
        {execution && (
          <div
            className="jp-DeepAnalyze-execution"
            data-status={execution.status}
          >
            {execution.executionCount !== null &&
              `[${execution.executionCount}] `}
            {labels.execution(execution.status)}
            {execution.feedback && (
              <details>
                <summary>{labels.output}</summary>
                <pre>{execution.feedback}</pre>
              </details>
            )}
          </div>
        )}
        {entry.approvalCode !== null && cellId !== undefined && (
          <div className="jp-DeepAnalyze-approval">
            <div className="jp-DeepAnalyze-hint">{labels.notRunYet}</div>
            <button
              className="jp-mod-styled jp-mod-accept"
              aria-label={labels.run}
              onClick={() => void runs.decide(cellId, 'run')}
            >
              {labels.run}
            </button>
            <button
              className="jp-mod-styled"
              aria-label={labels.skip}
              onClick={() => void runs.decide(cellId, 'skip')}
            >
              {labels.skip}
            </button>
            <button
              className="jp-DeepAnalyze-linkButton"
              aria-label={labels.showCell}
              onClick={() => void runs.revealCell(cellId)}
            >
              {labels.showCell}
            </button>
          </div>
        )}
      </li>
    );
  }

  /** JupyterLab's own "Restart Kernel…" (with its confirmation) on the run's notebook. */
  private async _restartKernel(): Promise<void> {
    const notebook = this.model.runs.notebook;
    await this.commands.execute(
      RESTART_KERNEL_COMMAND,
      notebook ? { semanticWidget: notebook.widgetId } : {}
    );
  }

  private _clock: ReturnType<typeof setInterval> | undefined;
}

/** `pandas.DataFrame` → `DataFrame`: the list is narrow; the full name is in the tooltip. */
export function shortType(type: string): string {
  return type.slice(type.lastIndexOf('.') + 1);
}
