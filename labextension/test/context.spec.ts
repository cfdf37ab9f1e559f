/**
 * Which of the kernel's variables a question from the sidebar describes to the model.
 */

import { describe, expect, it } from 'vitest';

import { MAX_UNNAMED_VARIABLES, variablesForQuestion } from '../src/context';

describe('variablesForQuestion', () => {
  it('describes the variables a question names, as whole words', () => {
    const listed = ['df', 'df2', 'sales', 'ventes_été'];
    expect(
      variablesForQuestion('What is the mean of v in df?', listed)
    ).toEqual(['df']);
    expect(variablesForQuestion('Join df2 and `sales`.', listed)).toEqual([
      'df2',
      'sales'
    ]);
    expect(variablesForQuestion('Summarize ventes_été', listed)).toEqual([
      'ventes_été'
    ]);
    // Part of a longer word is not a mention.
    expect(variablesForQuestion('What is in df_old?', ['df', 'x'])).toEqual([
      'df',
      'x'
    ]);
  });

  it('describes the first few when the question names none', () => {
    const many = Array.from({ length: 8 }, (_, i) => `frame${i}`);
    expect(variablesForQuestion('What drives sales?', ['df'])).toEqual(['df']);
    expect(variablesForQuestion('What drives revenue?', many)).toEqual(
      many.slice(0, MAX_UNNAMED_VARIABLES)
    );
    expect(variablesForQuestion('Anything?', [])).toEqual([]);
  });
});
