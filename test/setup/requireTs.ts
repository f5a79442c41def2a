// Workers `require()` the payload converter by path (dataConverter.payloadConverterPath): under
// vitest that path is a .ts file, which Node's own require cannot load without tsx's hook.
import { createRequire } from 'node:module';

const { register } = createRequire(__filename)('tsx/cjs/api') as { register: () => void };
register();
