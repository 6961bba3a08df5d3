import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { listenFds } from '../../src/transparent/systemd';

describe('systemd socket activation (sd_listen_fds)', () => {
  it('takes LISTEN_FDS descriptors from 3 when LISTEN_PID is this process', () => {
    assert.deepEqual(listenFds({ LISTEN_PID: '42', LISTEN_FDS: '2' }, 42), [3, 4]);
  });

  it('ignores descriptors meant for another process (e.g. a parent that did not unset them)', () => {
    assert.deepEqual(listenFds({ LISTEN_PID: '41', LISTEN_FDS: '1' }, 42), []);
  });

  it('ignores missing or malformed counts', () => {
    assert.deepEqual(listenFds({}, 42), []);
    assert.deepEqual(listenFds({ LISTEN_PID: '42' }, 42), []);
    assert.deepEqual(listenFds({ LISTEN_PID: '42', LISTEN_FDS: 'x' }, 42), []);
    assert.deepEqual(listenFds({ LISTEN_PID: '42', LISTEN_FDS: '0' }, 42), []);
  });
});
