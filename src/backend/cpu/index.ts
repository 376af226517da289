import { registerBackend } from '../../tensor/backend.js';
import { CpuBackend } from './cpu-backend.js';

registerBackend('cpu', () => new CpuBackend());
export { CpuBackend };
