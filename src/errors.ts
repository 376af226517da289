// Base class for errors caused by what the user gave (a file, a field, an argument). The CLI prints
// `dsv32: <message>` for these and exits 2, without a stack trace. Every area's typed errors extend it,
// so a message must name the file/field/argument and what was expected.
export class DsvError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
