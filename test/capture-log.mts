// A Logger for unit tests that keeps its lines, masked as the real one masks them, instead of printing them.
import { Logger } from '../bootstrap/lib/log.mts';
import { mask } from '../bootstrap/lib/redact.mts';

export class CaptureLog extends Logger {
  lines: string[] = [];
  override info(m: string): void {
    this.lines.push(mask(m));
  }
  override detail(m: string): void {
    this.lines.push(mask(m));
  }
  override warn(m: string): void {
    this.lines.push(`warning: ${mask(m)}`);
  }
  override error(m: string): void {
    this.lines.push(`error: ${mask(m)}`);
  }
  override fileOnly(): void {}
}
