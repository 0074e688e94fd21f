#!/usr/bin/env node
// Registers the TypeScript loader, then hands over to the CLI: the package runs from source.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
