// Structured outputs and tools through real client libraries, against a
// running serve (SERVE_URL) on a random-weight model (MODEL): the openai
// package's zod helpers (chat.completions.parse, responses.parse), its
// streaming tool-call accumulation and the tool result round trip, and the
// OpenAI Agents SDK running a tool-using agent over the Responses API.
// Random weights know nothing of JSON: every check passes because the
// server's masks, not the model, shape the output.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { Agent, run, tool, setDefaultOpenAIClient, setTracingDisabled } from '@openai/agents';

const baseURL = process.env.SERVE_URL + '/v1';
const model = process.env.MODEL;
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}

const Person = z.object({
  name: z.string().max(20),
  age: z.number().int().min(0).max(120),
  mood: z.enum(['happy', 'sad', 'pirate']),
  tags: z.array(z.string().max(8)).max(3),
});

await check('chat.completions.parse with a zod schema', async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.parse({
      model, messages: [{ role: 'user', content: 'Describe a pirate.' }], temperature: 1.2, seed, max_tokens: 2000,
      response_format: zodResponseFormat(Person, 'person'),
    });
    const msg = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'stop');
    Person.parse(msg.parsed); // the helper parsed it; check it again
  }
});

await check('responses.parse with zodTextFormat', async () => {
  const r = await client.responses.parse({
    model, input: 'Describe a pirate.', temperature: 1.1, max_output_tokens: 2000,
    text: { format: zodTextFormat(Person, 'person') },
  });
  assert.equal(r.status, 'completed');
  Person.parse(r.output_parsed);
});

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['C', 'F'] } }, required: ['city', 'unit'], additionalProperties: false },
  },
}];

await check('streamed tool call, accumulated by the client, and the result round trip', async () => {
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const stream = client.chat.completions.stream({ model, messages, tools, tool_choice: 'required', temperature: 1, seed: 5, max_tokens: 400 });
  let argDeltas = 0;
  stream.on('tool_calls.function.arguments.delta', () => argDeltas++);
  const final = await stream.finalChatCompletion();
  const choice = final.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  const args = JSON.parse(call.function.arguments);
  assert.ok(typeof args.city === 'string' && ['C', 'F'].includes(args.unit), call.function.arguments);
  assert.ok(argDeltas > 0, 'no arguments delta event');
  const next = await client.chat.completions.create({
    model, tools, tool_choice: 'none', max_tokens: 16, temperature: 0,
    messages: [...messages, choice.message, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' }],
  });
  assert.equal(typeof next.choices[0].message.content, 'string');
  assert.ok(!next.choices[0].message.tool_calls?.length);
});

await check('a named tool is always called', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'x' }], tools, temperature: 1.5, seed: 9, max_tokens: 400,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const call = r.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  JSON.parse(call.function.arguments);
});

await check('OpenAI Agents SDK: an agent calls a tool and answers', async () => {
  setTracingDisabled(true);
  setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 }));
  const calls = [];
  const getTime = tool({
    name: 'get_time', description: 'The time in a time zone',
    parameters: z.object({ zone: z.string().max(10) }),
    execute: async ({ zone }) => { calls.push(zone); return `12:00 in ${zone}`; },
  });
  // toolChoice required makes the first turn a call; the SDK then resets
  // it to auto, and the final answer comes in the agent's output type (a
  // json_schema text format), so a random model ends it too.
  const Answer = z.object({ time: z.string().max(10), zone: z.string().max(10) });
  const agent = new Agent({ name: 'clock', instructions: 'Tell the time.', model, tools: [getTime], outputType: Answer,
    modelSettings: { toolChoice: 'required', temperature: 1, maxTokens: 1500 } });
  const result = await run(agent, 'What time is it in Lima?', { maxTurns: 4 });
  assert.ok(calls.length >= 1, 'the tool was not called');
  assert.equal(typeof calls[0], 'string');
  Answer.parse(result.finalOutput);
});

if (failed) {
  console.log(`${failed} check(s) failed`);
  process.exit(1);
}
console.log('structured outputs e2e: all checks passed');
