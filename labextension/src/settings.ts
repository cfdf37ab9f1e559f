/**
 * The assistant's settings (`schema/plugin.json`), as the sidebar reads and changes them.
 *
 * Owns reading the three settings from JupyterLab's setting registry (the user's value,
 * else the schema's default: defaults are written only in the schema) and saving the one
 * the sidebar changes, the approval mode, when the user changes it, and only then.
 *
 * Must not hold defaults of its own or write a setting nobody changed.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { ReadonlyPartialJSONValue } from '@lumino/coreutils';
import { type ISignal, Signal } from '@lumino/signaling';

import type { ApprovalMode } from './api';

/** Where a run's cells go in its notebook. */
export type CellPlacement = 'below-active-cell' | 'end-of-notebook';

export class AssistantSettings {
  constructor(private readonly settings: ISettingRegistry.ISettings) {
    settings.changed.connect(this._onChanged, this);
  }

  /** Model spec for new runs; empty for the server's default. */
  get defaultModel(): string {
    return this._read('defaultModel') as string;
  }

  /** `manual`: every code cell waits for Run or Skip. */
  get approval(): ApprovalMode {
    return (this._pendingApproval ?? this._read('approval')) as ApprovalMode;
  }

  get cellPlacement(): CellPlacement {
    return this._read('cellPlacement') as CellPlacement;
  }

  /**
   * The user changed the approval mode (the sidebar's toggle): it applies at once and
   * is saved, so that it survives a reload.
   */
  async setApproval(mode: ApprovalMode): Promise<void> {
    if (mode === this.approval) {
      return;
    }
    this._pendingApproval = mode;
    this._changed.emit();
    await this.settings.set('approval', mode);
  }

  /** Emitted when a setting changed (here or in the settings editor). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  dispose(): void {
    this.settings.changed.disconnect(this._onChanged, this);
    Signal.clearData(this);
  }

  /** The user's value, else the schema's default (what `composite` merges). */
  private _read(key: string): ReadonlyPartialJSONValue | undefined {
    return this.settings.composite[key];
  }

  private _onChanged(): void {
    this._pendingApproval = null;
    this._changed.emit();
  }

  private readonly _changed = new Signal<this, void>(this);
  /** Set while a change the user made is being saved. */
  private _pendingApproval: ApprovalMode | null = null;
}
