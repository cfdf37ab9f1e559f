// @vitest-environment jsdom
/**
 * The assistant's settings through JupyterLab's own setting registry, loaded with this
 * extension's schema (`schema/plugin.json`): defaults come from the schema, and only a
 * change the user makes is saved.
 */

import {
  type ISettingRegistry,
  SettingRegistry
} from '@jupyterlab/settingregistry';
import type { IDataConnector } from '@jupyterlab/statedb';
import { describe, expect, it } from 'vitest';

import schemaJSON from '../schema/plugin.json';
import { AssistantSettings } from '../src/settings';

const PLUGIN_ID = 'jupyter-deepanalyze:plugin';
const schema = schemaJSON as unknown as ISettingRegistry.ISchema;

/** The server's settings API, in memory: what it holds and every save it received. */
class SettingsStore implements IDataConnector<
  ISettingRegistry.IPlugin,
  string
> {
  constructor(public raw = '{}') {}

  readonly saves: string[] = [];

  async fetch(id: string): Promise<ISettingRegistry.IPlugin> {
    return {
      id,
      raw: this.raw,
      schema,
      version: '0.1.0',
      data: { composite: {}, user: {} }
    };
  }

  async list(): Promise<{ ids: string[]; values: ISettingRegistry.IPlugin[] }> {
    return { ids: [PLUGIN_ID], values: [await this.fetch(PLUGIN_ID)] };
  }

  async save(_id: string, raw: string): Promise<void> {
    this.saves.push(raw);
    this.raw = raw;
  }

  async remove(): Promise<void> {
    this.raw = '{}';
  }
}

async function load(store: SettingsStore): Promise<AssistantSettings> {
  const registry = new SettingRegistry({ connector: store });
  return new AssistantSettings(await registry.load(PLUGIN_ID));
}

function schemaDefault(key: string): unknown {
  return (schemaJSON.properties as Record<string, { default: unknown }>)[key]
    .default;
}

describe('AssistantSettings', () => {
  it("reads the schema's defaults when the user set nothing", async () => {
    const settings = await load(new SettingsStore());

    expect({
      defaultModel: settings.defaultModel,
      approval: settings.approval,
      cellPlacement: settings.cellPlacement
    }).toEqual({
      defaultModel: schemaDefault('defaultModel'),
      approval: schemaDefault('approval'),
      cellPlacement: schemaDefault('cellPlacement')
    });
  });

  it("reads the user's values over the defaults", async () => {
    const settings = await load(
      new SettingsStore(
        JSON.stringify({ approval: 'manual', cellPlacement: 'end-of-notebook' })
      )
    );

    expect(settings.approval).toBe('manual');
    expect(settings.cellPlacement).toBe('end-of-notebook');
    expect(settings.defaultModel).toBe(schemaDefault('defaultModel'));
  });

  it('applies the approval the user picks at once and saves it once', async () => {
    const store = new SettingsStore();
    const settings = await load(store);
    let changes = 0;
    settings.changed.connect(() => changes++);

    const saving = settings.setApproval('manual');
    expect(settings.approval).toBe('manual');
    await saving;

    expect(store.saves).toHaveLength(1);
    expect(changes).toBeGreaterThan(0);
    // Reading, or picking what is already set, writes nothing.
    for (let i = 0; i < 100; i++) {
      expect(settings.approval).toBe('manual');
    }
    await settings.setApproval('manual');
    expect(store.saves).toHaveLength(1);

    const reloaded = await load(store);
    expect(reloaded.approval).toBe('manual');
  });
});
