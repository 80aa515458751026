// The console page: connects noVNC to vnc-proxy's websocket for the VM the
// page is for, with the token from the URL fragment (#token=..., which
// browsers never send to a server) or pasted in; shows whether the console is
// connected and, when it ends, why.
import RFB from './novnc/core/rfb.js';

const bearerPrefix = 'base64url.bearer.authorization.k8s.io.';

const { namespace, vm } = document.body.dataset;
const screen = document.getElementById('screen');
const status = document.getElementById('status');
const form = document.getElementById('connect');
const tokenInput = document.getElementById('token');
const disconnectButton = document.getElementById('disconnect');

let rfb = null;

// setStatus shows the state (idle, connecting, connected, refused,
// disconnected) and records when it changed, for people and for tests.
function setStatus(state, text) {
  status.dataset.state = state;
  status.dataset.since = String(Date.now());
  status.textContent = text;
}

function base64url(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// tokenFromFragment takes the token out of the URL fragment and then drops
// the fragment from the address bar and the history.
function tokenFromFragment() {
  if (!location.hash) {
    return '';
  }
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  history.replaceState(null, '', location.pathname);
  return token.trim();
}

// closeText says why the proxy ended a session, from its close code and
// reason.
function closeText(event, opened) {
  if (!opened) {
    return ['refused', 'Refused: the token is not good for this VM (invalid, expired, revoked or another VM\'s), or the VM has no console.'];
  }
  switch (event.code) {
    case 1000:
      return ['disconnected', event.reason ? `Disconnected: ${event.reason}.` : 'Disconnected.'];
    case 1001:
      return ['disconnected', `Disconnected: ${event.reason || 'the proxy went away'}.`];
    case 1008:
      return ['disconnected', `Disconnected: ${event.reason || 'the token is no longer good'}.`];
    case 1013:
      return ['disconnected', `Disconnected: ${event.reason || 'the token could not be checked'}; try again.`];
    default:
      return ['disconnected', `Disconnected: connection lost (code ${event.code}).`];
  }
}

function connect(token) {
  if (rfb) {
    rfb.disconnect();
  }
  const url = new URL(`../../vnc/${encodeURIComponent(namespace)}/${encodeURIComponent(vm)}`, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url, ['binary', bearerPrefix + base64url(token)]);
  ws.binaryType = 'arraybuffer';
  let opened = false;
  ws.addEventListener('open', () => { opened = true; });
  ws.addEventListener('close', (event) => {
    const [state, text] = closeText(event, opened);
    status.dataset.closeCode = String(event.code);
    setStatus(state, text);
    form.hidden = false;
    disconnectButton.hidden = true;
  });
  setStatus('connecting', 'Connecting…');
  form.hidden = true;
  const session = new RFB(screen, ws, { shared: true });
  session.scaleViewport = true;
  session.background = '#1e1e1e';
  session.addEventListener('connect', () => {
    setStatus('connected', 'Connected.');
    disconnectButton.hidden = false;
  });
  session.addEventListener('securityfailure', (event) => {
    setStatus('disconnected', `Disconnected: the VM's VNC server refused (${event.detail.reason || event.detail.status}).`);
  });
  rfb = session;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  tokenInput.value = '';
  if (token) {
    connect(token);
  }
});

disconnectButton.addEventListener('click', () => {
  if (rfb) {
    rfb.disconnect();
  }
});

const fromFragment = tokenFromFragment();
if (fromFragment) {
  connect(fromFragment);
}
