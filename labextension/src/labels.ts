/**
 * Every text the extension shows a person, in one place, through the translator.
 *
 * Owns the words of the sidebar, the commands, the `%analyze` output and the errors the
 * assistant reports, so that a language pack (domain `jupyter_deepanalyze`) translates
 * all of them and the accessible names the browser tests rely on (README, "Names the
 * browser tests can rely on") are written once. Each text is a literal `trans.__` call,
 * as JupyterLab's string extraction expects.
 *
 * Must not hold state: views and models ask it for words.
 */

import type { TranslationBundle } from '@jupyterlab/translation';

import { DeepAnalyzeRequestError } from './api';
import type { CellRole, ExecutionStatus, RunStatus } from './events';
import type { StepKind } from './transcript';

/** The texts of the extension in the user's language; see `labelsFor`. */
export type Labels = ReturnType<typeof labelsFor>;

export function labelsFor(trans: TranslationBundle) {
  return {
    /** The sidebar's name, title and accessible name; the palette's category. */
    deepAnalyze: trans.__('DeepAnalyze'),

    // ---- sidebar: options
    model: trans.__('Model'),
    unavailableModel: (name: string) => trans.__('%1 (unavailable)', name),
    unavailableReason: (name: string, reason: string) =>
      trans.__('%1 is unavailable: %2', name, reason),

    // ---- Model settings (the user's own model)
    modelSettings: trans.__('Model settings'),
    modelSettingsCommand: trans.__('DeepAnalyze: Model settings…'),
    modelSettingsIntro: trans.__(
      'Add an OpenAI-compatible model server (vLLM, SGLang, Ollama, llama.cpp server, a cloud API). The API key is kept on the Jupyter server, readable by your account only, and never sent back to the browser or to a kernel.'
    ),
    modelUrl: trans.__('Model server URL'),
    servedModelName: trans.__('Served model name'),
    servedModelNamePlaceholder: trans.__('optional: the first one it serves'),
    apiKey: trans.__('API key'),
    apiKeyPlaceholder: trans.__('optional'),
    apiKeyKept: trans.__('kept on the server: type a new one to replace it'),
    testModel: trans.__('Test'),
    testingModel: trans.__('Asking the server for its models…'),
    modelAnswers: (models: string) =>
      trans.__('It answers and serves: %1', models),
    modelDoesNotAnswer: (reason: string) =>
      trans.__('It does not answer: %1', reason),
    removeModel: trans.__('Remove'),
    saveModel: trans.__('Save'),
    askBeforeRunning: trans.__('Ask before running code'),

    // ---- sidebar: dataframes
    dataframes: trans.__('Dataframes'),
    refreshDataframes: trans.__('Refresh dataframes'),
    noKernel: trans.__(
      'Open a notebook with a running kernel to see its dataframes.'
    ),
    noDataframes: trans.__('No dataframes in this kernel yet.'),
    analyze: trans.__('Analyze'),
    analyzeName: (name: string) => trans.__('Analyze %1', name),

    // ---- sidebar: the run
    intro: trans.__(
      'Ask a question about your data. DeepAnalyze plans, writes and runs code cells in the active notebook, then writes a report.'
    ),
    elapsedTime: trans.__('Elapsed time'),
    notebookNotOpen: (path: string) =>
      trans.__(
        'The notebook %1 is not open: its cells will be added when it is opened.',
        path
      ),
    error: (message: string) => trans.__('Error: %1', message),
    streamLost: (detail: string) =>
      trans.__(
        "Lost the connection to the run's events (%1). Reload the page to reconnect.",
        detail
      ),
    output: trans.__('Output'),
    notRunYet: trans.__(
      'This cell has not run. Edit it in the notebook if you like, then Run or Skip it.'
    ),
    run: trans.__('Run'),
    skip: trans.__('Skip'),
    showCell: trans.__('Show cell'),

    // ---- sidebar: the conversation
    newConversation: trans.__('New conversation'),
    followUpHint: trans.__(
      'Your next question follows up this conversation: the model remembers it, and its code sees what the earlier runs created.'
    ),
    earlierQuestion: (question: string) =>
      trans.__('Earlier question: %1', question),
    steps: (count: number) => trans._n('%1 step', '%1 steps', count),
    files: trans.__('Files'),
    fileSize: (size: string, status: string) =>
      trans.__('%1, %2', size, status),
    fileStatus: (status: string) =>
      status === 'modified' ? trans.__('modified') : trans.__('created'),
    openFile: (path: string) => trans.__('Open %1', path),
    downloadFile: (path: string) => trans.__('Download %1', path),
    open: trans.__('Open'),
    download: trans.__('Download'),
    exportReport: trans.__('Export report…'),
    exportAs: (format: string) => trans.__('Export as %1', format),
    exportFormat: (format: string) =>
      format === 'pdf'
        ? trans.__('PDF')
        : format === 'markdown'
          ? trans.__('Markdown')
          : trans.__('HTML'),
    exporting: trans.__('Exporting…'),
    exportedTo: (path: string) => trans.__('Exported to %1', path),
    exportFailed: (reason: string) => trans.__('Export failed: %1', reason),

    // ---- sidebar: the question box
    askDeepAnalyze: trans.__('Ask DeepAnalyze'),
    askPlaceholder: trans.__('Ask a question about your data…'),
    send: trans.__('Send'),
    stop: trans.__('Stop'),

    /** How a run's status reads, in the sidebar and in the magic's output. */
    runStatus(status: RunStatus): string {
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
    },

    /** The label of a step of the chat view. */
    stepKind(kind: StepKind): string {
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
    },

    /** How a code step's execution ended. */
    execution(status: ExecutionStatus): string {
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
        case 'unresponsive':
          return trans.__('still running: the code ignores interrupts');
      }
    },
    /** Shown when a run's code ignored the interrupt and keeps the kernel busy. */
    kernelUnresponsive: trans.__(
      'The kernel is still busy with code that ignores interrupts: nothing else can run in it. Restart the kernel to use it again (its variables will be lost).'
    ),
    restartKernel: trans.__('Restart kernel'),

    // ---- the %analyze output
    runOutputTitle: trans.__('DeepAnalyze run'),
    inProgress: trans.__('In progress'),
    insertAsCells: trans.__('Insert as cells'),
    cannotShowOutput: (message: string) =>
      trans.__('Cannot show this DeepAnalyze output: %1', message),
    openNotebookToInsert: trans.__('Open a notebook to insert the cells into.'),
    cellsInserted: (count: number) =>
      trans._n('%1 cell inserted', '%1 cells inserted', count),
    cellsAlreadyThere: (count: number) =>
      trans._n(
        'Its %1 cell is in the notebook already',
        'Its %1 cells are in the notebook already',
        count
      ),

    /** The label of an agent cell in the `%analyze` output, by its role. */
    cellRole(role: CellRole | undefined): string {
      switch (role) {
        case 'title':
          return trans.__('Question');
        case 'analyze':
          return trans.__('Analyze');
        case 'understand':
          return trans.__('Understand');
        case 'code':
          return trans.__('Code');
        case 'report':
          return trans.__('Report');
        case 'status':
          return trans.__('Status');
        default:
          return trans.__('Note');
      }
    },

    // ---- commands
    openAssistant: trans.__('DeepAnalyze: Open assistant'),
    launcherReport: trans.__('DeepAnalyze report'),
    openAssistantCaption: trans.__('Open the DeepAnalyze assistant'),
    analyzeDataframeCommand: trans.__('DeepAnalyze: Analyze dataframe…'),
    analyzeDataframeCaption: trans.__(
      'Start a DeepAnalyze run about a dataframe of the kernel'
    ),
    analyzeDataframeQuestion: (name: string) =>
      trans.__('Analyze the dataframe `%1`.', name),
    analyzeDataframeTitle: trans.__('Analyze dataframe'),
    dataframe: trans.__('Dataframe'),
    noDataframesTitle: trans.__('No dataframes'),
    noDataframesInKernel: trans.__(
      "The active notebook's kernel has no dataframes yet."
    ),
    generateReportCommand: trans.__('DeepAnalyze: Generate report notebook…'),
    generateReportCaption: trans.__(
      'Create a notebook beside the active one and let DeepAnalyze write a report in it'
    ),
    generateReportTitle: trans.__('Generate report notebook'),
    reportQuestion: trans.__('What should the report answer?'),
    reportQuestionPlaceholder: trans.__('e.g. Which factors drive sales?'),
    cannotCreateReport: trans.__('Cannot create the report notebook'),
    removeLastRunCommand: trans.__('DeepAnalyze: Remove cells of last run'),
    removeLastRunCaption: trans.__(
      'Remove the cells the last DeepAnalyze run added to this notebook, and no others'
    ),

    // ---- what went wrong, as one readable line
    /** A failed request (or anything thrown) as one line. */
    failure(error: unknown): string {
      if (error instanceof DeepAnalyzeRequestError && error.status === null) {
        return trans.__('Cannot reach the Jupyter server: %1', error.message);
      }
      return error instanceof Error ? error.message : String(error);
    },
    openNotebookToAnalyze: trans.__('Open a notebook to analyze data in it.'),
    cannotListModels: (reason: string) =>
      trans.__('Cannot list models: %1', reason),
    cannotListDataframes: (reason: string) =>
      trans.__('Cannot list dataframes: %1', reason),
    kernelBusyWithRun: trans.__(
      "This notebook's kernel is already running a DeepAnalyze run, shown here: stop it or wait for it to finish."
    ),
    cannotResume: (reason: string) =>
      trans.__('Cannot resume the last run: %1', reason),
    cannotFollow: (reason: string) =>
      trans.__('Cannot follow the run: %1', reason)
  };
}
