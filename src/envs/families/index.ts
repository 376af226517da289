// Registers the built-in environment families with the registry (idempotent). Add one line per family.
import { registerFamily } from './registry.js';
import { tripFamily } from './trip/family.js';
import { codeInterpreterFamily } from './code-interpreter/family.js';
import { searchFamily } from './search/family.js';
import { codeAgentFamily } from './code-agent/family.js';
import { arithmeticFamily } from './arithmetic/family.js';

let registered = false;

export function registerBuiltinFamilies(): void {
  if (registered) return;
  registered = true;
  registerFamily(tripFamily);
  registerFamily(codeInterpreterFamily);
  registerFamily(searchFamily);
  registerFamily(codeAgentFamily);
  registerFamily(arithmeticFamily);
}
