/**
 * The "Model settings" dialog: the user's own OpenAI-compatible model, added from
 * JupyterLab.
 *
 * Owns the dialog's form (server URL, served model name, API key), its Test button
 * (`GET {url}/models` through the server, with the key) and saving or removing the
 * settings. The key is sent to the server and kept there (an owner-only file); the
 * server never sends it back, so the form only says whether one is kept.
 *
 * Must not keep the key anywhere in the browser beyond the open dialog.
 */

import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import type {
  DeepAnalyzeClient,
  IModelTest,
  IUserModel,
  IUserModelSettings
} from './api';
import type { Labels } from './labels';

interface IFormProps {
  client: DeepAnalyzeClient;
  labels: Labels;
  saved: IUserModel | null;
  onChange(settings: IUserModelSettings): void;
}

function ModelSettingsForm(props: IFormProps): React.ReactElement {
  const { client, labels, saved } = props;
  const [url, setUrl] = React.useState(saved?.url ?? '');
  const [name, setName] = React.useState(saved?.model_name ?? '');
  const [key, setKey] = React.useState('');
  const [test, setTest] = React.useState<IModelTest | 'testing' | null>(null);

  const settings = (): IUserModelSettings => ({
    url: url.trim(),
    model_name: name.trim(),
    ...(key ? { api_key: key } : {})
  });
  React.useEffect(() => {
    props.onChange(settings());
  }, [url, name, key]);

  const runTest = async () => {
    setTest('testing');
    try {
      setTest(await client.testUserModel(settings()));
    } catch (error) {
      setTest({ ok: false, models: [], error: labels.failure(error) });
    }
  };

  let result: React.ReactNode = null;
  if (test === 'testing') {
    result = labels.testingModel;
  } else if (test?.ok) {
    result = labels.modelAnswers(test.models.join(', '));
  } else if (test) {
    result = labels.modelDoesNotAnswer(test.error ?? '');
  }
  return (
    <form
      className="jp-DeepAnalyze-modelSettings"
      onSubmit={event => event.preventDefault()}
    >
      <p className="jp-DeepAnalyze-hint">{labels.modelSettingsIntro}</p>
      <label>
        <span>{labels.modelUrl}</span>
        <input
          className="jp-mod-styled"
          aria-label={labels.modelUrl}
          placeholder="http://localhost:8000/v1"
          value={url}
          onChange={event => setUrl(event.target.value)}
        />
      </label>
      <label>
        <span>{labels.servedModelName}</span>
        <input
          className="jp-mod-styled"
          aria-label={labels.servedModelName}
          placeholder={labels.servedModelNamePlaceholder}
          value={name}
          onChange={event => setName(event.target.value)}
        />
      </label>
      <label>
        <span>{labels.apiKey}</span>
        <input
          className="jp-mod-styled"
          type="password"
          autoComplete="off"
          aria-label={labels.apiKey}
          placeholder={
            saved?.has_api_key ? labels.apiKeyKept : labels.apiKeyPlaceholder
          }
          value={key}
          onChange={event => setKey(event.target.value)}
        />
      </label>
      <div className="jp-DeepAnalyze-modelTest">
        <button
          type="button"
          className="jp-mod-styled"
          disabled={!url.trim() || test === 'testing'}
          onClick={() => void runTest()}
        >
          {labels.testModel}
        </button>
        <span
          role="status"
          className={
            test && test !== 'testing' && !test.ok
              ? 'jp-DeepAnalyze-error'
              : 'jp-DeepAnalyze-hint'
          }
        >
          {result}
        </span>
      </div>
    </form>
  );
}

class ModelSettingsBody
  extends ReactWidget
  implements Dialog.IBodyWidget<IUserModelSettings>
{
  constructor(
    private readonly client: DeepAnalyzeClient,
    private readonly labels: Labels,
    private readonly saved: IUserModel | null
  ) {
    super();
    this._value = { url: saved?.url ?? '', model_name: saved?.model_name };
  }

  getValue(): IUserModelSettings {
    return this._value;
  }

  render(): React.ReactElement {
    return (
      <ModelSettingsForm
        client={this.client}
        labels={this.labels}
        saved={this.saved}
        onChange={value => {
          this._value = value;
        }}
      />
    );
  }

  private _value: IUserModelSettings;
}

/**
 * Shows the dialog; returns the URL of the model saved (to pick it), `''` when the
 * settings were removed, `null` when nothing changed. Failures are shown in a dialog.
 */
export async function editModelSettings(
  client: DeepAnalyzeClient,
  labels: Labels
): Promise<string | null> {
  let saved: IUserModel | null;
  try {
    saved = await client.getUserModel();
  } catch (error) {
    await showDialog({
      title: labels.modelSettings,
      body: labels.failure(error),
      buttons: [Dialog.okButton()]
    });
    return null;
  }
  const remove = Dialog.warnButton({ label: labels.removeModel });
  const result = await showDialog({
    title: labels.modelSettings,
    body: new ModelSettingsBody(client, labels, saved),
    buttons: [
      Dialog.cancelButton(),
      ...(saved ? [remove] : []),
      Dialog.okButton({ label: labels.saveModel })
    ],
    focusNodeSelector: 'input'
  });
  if (!result.button.accept || result.value === null) {
    return null;
  }
  try {
    if (result.button.label === remove.label) {
      await client.deleteUserModel();
      return '';
    }
    return (await client.saveUserModel(result.value)).url;
  } catch (error) {
    await showDialog({
      title: labels.modelSettings,
      body: labels.failure(error),
      buttons: [Dialog.okButton()]
    });
    return null;
  }
}
