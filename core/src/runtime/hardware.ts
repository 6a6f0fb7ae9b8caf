import { promises as fs } from 'node:fs';
import os from 'node:os';
import type { HardwareProfile } from '../contract/messages.js';

async function firstReadable(paths: string[]): Promise<string> {
  for (const p of paths) {
    try {
      const text = (await fs.readFile(p, 'utf8')).replace(/\0/g, '').trim();
      if (text) return text;
    } catch {
      // not on this device
    }
  }
  return '';
}

async function socName(): Promise<string> {
  try {
    const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8');
    const line = cpuinfo.split('\n').find((l) => /^(Hardware|model name)\s*:/.test(l));
    return line ? line.split(':').slice(1).join(':').trim() : '';
  } catch {
    return '';
  }
}

async function accelerators(): Promise<string[]> {
  const found: string[] = [];
  const probes: Array<[string, string]> = [
    ['/dev/nvidia0', 'nvidia-gpu'],
    ['/dev/apex_0', 'edgetpu'],
    ['/dev/dri/renderD128', 'gpu'],
    ['/dev/hailo0', 'hailo'],
  ];
  for (const [device, name] of probes) {
    try {
      await fs.access(device);
      found.push(name);
    } catch {
      // absent
    }
  }
  return found;
}

/** What Register reports about the device; read-only look-ups, nothing executed. */
export async function readHardwareProfile(): Promise<HardwareProfile> {
  return {
    model: await firstReadable(['/sys/firmware/devicetree/base/model', '/sys/class/dmi/id/product_name']),
    soc: await socName(),
    arch: os.arch(),
    cpuCores: os.cpus().length,
    memoryBytes: os.totalmem(),
    accelerators: await accelerators(),
    os: `${os.type()} ${await firstReadable(['/etc/debian_version'])}`.trim(),
    kernel: os.release(),
  };
}
