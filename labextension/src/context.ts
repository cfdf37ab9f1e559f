/**
 * What a question asked in the sidebar tells the model about the notebook's kernel.
 *
 * Owns the choice of the kernel variables (dataframes, series, arrays the sidebar
 * lists) that are described to the model with a question, so that the model knows
 * what `df` is. Pure: no I/O, no DOM.
 */

/** At most this many variables are described with a question that names none. */
export const MAX_UNNAMED_VARIABLES = 5;

/**
 * The variables of `listed` a question is about: those it names (as whole words),
 * else the first `MAX_UNNAMED_VARIABLES` of them, for a question such as "What drives
 * sales?" that says "the data" and means the kernel's dataframe.
 */
export function variablesForQuestion(
  question: string,
  listed: readonly string[]
): string[] {
  const named = listed.filter(name => {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return new RegExp(
      `(^|[^\\p{L}\\p{N}_])${escaped}($|[^\\p{L}\\p{N}_])`,
      'u'
    ).test(question);
  });
  return named.length > 0 ? named : listed.slice(0, MAX_UNNAMED_VARIABLES);
}
