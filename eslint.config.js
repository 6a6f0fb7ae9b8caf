// eslint: the type-aware rules that catch real bugs, above all in async code: a promise nobody
// awaits or catches, a promise handed to a caller that ignores it (an event listener, a timer),
// an `await` of something that is not a promise, a switch that misses a member of a union, a
// `return promise` inside try whose rejection the catch never sees. `npm run lint` (after
// `npm run build`: the packages import each other's declarations from dist/); scripts/test-all.sh
// runs it. Layout is Prettier's job (.prettierrc), never eslint's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const unsafeAny = [
  '@typescript-eslint/no-unsafe-argument',
  '@typescript-eslint/no-unsafe-assignment',
  '@typescript-eslint/no-unsafe-call',
  '@typescript-eslint/no-unsafe-member-access',
  '@typescript-eslint/no-unsafe-return',
];
const off = (rules) => Object.fromEntries(rules.map((rule) => [rule, 'off']));

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'test-results/**', 'console/static/**', 'cli/src/generated/**', 'dist-image/**', 'dist-packages/**', '.cache/**'],
  },
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        // One program per environment: node (sources, tests, scripts, benchmarks), the console
        // (DOM, bundler resolution), the console's browser tests (node and the DOM).
        project: ['./tsconfig.eslint.json', './console/tsconfig.json', './tests/console/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // The async rules this config exists for (the first three are in recommended-type-checked;
      // named here so no later preset can drop them).
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      // Only where it changes behaviour: `return promise` inside try/catch/finally, whose
      // rejection would skip the catch. Elsewhere `return await` and `return` are equivalent.
      '@typescript-eslint/return-await': ['error', 'error-handling-correctness-only'],

      // Off: noise here. `async` on a function without `await` is deliberate in this code: a
      // Fastify plugin or route must be async (or take a callback), store engines implement
      // one promise-returning interface whether the engine underneath is sync (better-sqlite3)
      // or not, and an async function turns a throw into a rejection the caller's catch sees;
      // dropping `async` would change that.
      '@typescript-eslint/require-await': 'off',
      // Off: noise here. It flags explicit String(v) on values typed unknown or loosely (database
      // columns, JSON leaves, DOM attributes), where a string is exactly what is wanted; an
      // object slipped into a template literal is still caught by restrict-template-expressions.
      '@typescript-eslint/no-base-to-string': 'off',
      // Passing on a reason we were given (an AbortSignal's reason, a caught error, a gRPC
      // callback's error) is fine; rejecting with a string or an object literal is not.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      // `self` where a callback runs with a `this` of its own that it needs too (prom-client's
      // collect() gets the metric as `this`; the fault injector's wrappers pass theirs through).
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self', 'injector'] }],
      // A leading underscore marks a parameter a signature requires, or a property picked off
      // to leave the rest (`const { a: _a, ...rest } = x`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  {
    // Tests read JSON answers as `any` and assert on them: the expect() is the type check.
    files: ['**/tests/**', 'tests/**'],
    // They also take a method off a prototype to wrap it and put it back (unbound-method).
    rules: { ...off(unsafeAny), '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/unbound-method': 'off' },
  },
  {
    // Plain JavaScript has no annotations: every parameter is `any` to the checker. The promise
    // rules still see every promise an async function returns.
    files: ['**/*.mjs', '**/*.js'],
    rules: off(unsafeAny),
  },
);
