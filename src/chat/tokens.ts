// The literal strings of the DeepSeek-V3.2 chat format (`｜` is U+FF5C, `▁` is U+2581). These are
// special tokens of the tokenizer except the DSML markers, which are ordinary text.
export const BOS = '<｜begin▁of▁sentence｜>';
export const EOS = '<｜end▁of▁sentence｜>';
export const USER = '<｜User｜>';
export const ASSISTANT = '<｜Assistant｜>';
export const THINK_START = '<think>';
export const THINK_END = '</think>';
export const DSML = '｜DSML｜';

export const FUNCTION_CALLS_OPEN = `<${DSML}function_calls>`;
export const FUNCTION_CALLS_CLOSE = `</${DSML}function_calls>`;
export const INVOKE_OPEN = `<${DSML}invoke`;
export const INVOKE_CLOSE = `</${DSML}invoke`;
export const PARAMETER_OPEN = `<${DSML}parameter`;
/** The official parser ends a parameter value at this string (the `<` before it closes the value). */
export const PARAMETER_END = `/${DSML}parameter`;
/** Where assistant content stops and a tool-call block begins, as the official parser looks for it. */
export const TOOL_CALLS_START = `\n\n<${DSML}function_calls`;

/** Strings that may never appear inside parsed content or reasoning (official parser rule). */
export const FORBIDDEN_IN_TEXT = [BOS, EOS, THINK_START, THINK_END, DSML] as const;
