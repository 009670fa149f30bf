import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/kubevirt/virtualmachine.swagger.json', import.meta.url));

type Schema = { [key: string]: unknown; properties?: Record<string, unknown>; additionalProperties?: unknown };

/**
 * A validator of kubevirt.io/v1 VirtualMachine from KubeVirt's published
 * schema (test/fixtures/kubevirt), as `kubectl --validate=strict` checks a
 * manifest: every object definition closed, so that a field the API does
 * not have is an error and not silently dropped.
 */
export async function virtualMachineValidator(): Promise<ValidateFunction> {
  const swagger = JSON.parse(await readFile(FIXTURE, 'utf8')) as { definitions: Record<string, Schema> };
  const definitions = Object.fromEntries(
    Object.entries(swagger.definitions).map(([name, schema]) => [name, schema.properties && schema.additionalProperties === undefined ? { ...schema, additionalProperties: false } : schema]),
  );
  // Swagger 2.0's definitions are JSON Schema draft 4 with extensions (x-kubernetes-*) and formats (int32, int64) ajv does not know: not strict.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  return ajv.compile({ definitions, $ref: '#/definitions/v1.VirtualMachine' });
}
