/**
 * Body validation with TypeBox's compiled checkers: one compiled function per schema, built
 * when the routes are installed, so a request pays for a check, not for interpreting a schema.
 */
import { FormatRegistry, type Static, type TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { InvalidRequestError } from '../shards/index.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (value) => RFC3339.test(value) && !Number.isNaN(Date.parse(value)));
}

/** Checks a value against a schema: returns it, typed, or throws `InvalidRequestError` listing what is wrong. */
export type Validator<T = unknown> = (value: unknown) => T;

export function compile<T extends TSchema>(schema: T): Validator<Static<T>> {
  const check: TypeCheck<T> = TypeCompiler.Compile(schema);
  return function validate(value) {
    if (check.Check(value)) return value;
    const errors: string[] = [];
    for (const error of check.Errors(value)) {
      errors.push(`${error.path || '/'}: ${error.message}`);
      if (errors.length >= 10) break;
    }
    throw new InvalidRequestError(`the request body is invalid: ${errors[0] ?? 'unexpected shape'}`, errors);
  };
}
