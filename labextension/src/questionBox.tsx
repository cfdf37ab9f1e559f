/**
 * The sidebar's question box: `Ask DeepAnalyze`, with `Send` and `Stop`.
 *
 * Owns the draft being typed (kept across re-renders, cleared only once a run started,
 * so a failed Send loses nothing) and the keys: Enter sends, Shift+Enter breaks the line.
 */

import React, { useState } from 'react';

import type { Labels } from './labels';

export interface IQuestionBoxProps {
  labels: Labels;
  busy: boolean;
  /** Resolves with the run id, or null when the run did not start. */
  onSend(question: string): Promise<string | null>;
  onStop(): void;
}

/** The question box keeps its own draft so that re-renders never lose typing. */
export function QuestionBox(props: IQuestionBoxProps): React.ReactElement {
  const { labels, busy } = props;
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
        aria-label={labels.askDeepAnalyze}
        placeholder={labels.askPlaceholder}
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
          aria-label={labels.send}
          disabled={busy || !draft.trim()}
          onClick={() => void send()}
        >
          {labels.send}
        </button>
        <button
          className="jp-mod-styled jp-mod-warn"
          aria-label={labels.stop}
          disabled={!busy}
          onClick={props.onStop}
        >
          {labels.stop}
        </button>
      </div>
    </div>
  );
}
