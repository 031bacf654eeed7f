"""The explorer at ``/``: one self-contained HTML file (no build step, no external assets, one
script) that reads the node's own API. Its pages are hash routes, so the node serves one page:

* ``#/`` the home: latest blocks with their architecture drawn as the NAS-Bench-201 cell,
  score, winner and payouts; the round in progress; peers;
* ``#/block/HEIGHT-OR-HASH``: the header, the cell drawn, the score out of the test set, the
  payouts and the transfers (``GET /api/v1/blocks/REF``);
* ``#/address/pn1…``: balance, nonce and history (``/accounts/A`` and ``/accounts/A/history``);
* ``#/round/HEIGHT``: the round that produced block HEIGHT, or the round in progress: its close,
  commitments, reveal set and leaderboard, every candidate's claim and what came of it
  (``GET /api/v1/rounds/H``);
* ``#/tx/HASH``: a transfer or a coinbase, confirmed or waiting;
* ``#/search/QUERY``: what the search box in the header does (``GET /api/v1/search``): it goes
  to the page of what it found, or says that nothing matches.

Amounts shown to people are in coins (8 decimals, trailing zeros cut), never base units.
"""

from __future__ import annotations

from aiohttp import web

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PoNAS explorer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 [hidden]{display:none!important}
 a{color:#2448b3;text-decoration:none} a:hover{text-decoration:underline}
 header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:18px;margin:0} header h1 a{color:#fff} header span{opacity:.8}
 header form{margin-left:auto;display:flex;gap:6px}
 header input{width:340px;padding:4px 8px;border-radius:4px;border:0;font:13px ui-monospace,monospace}
 header button{padding:4px 12px;border-radius:4px;border:0;background:#e8eefc;color:#1d2330;font-weight:600}
 #home{padding:16px 20px;display:grid;grid-template-columns:2fr 1fr;gap:16px}
 #view{padding:16px 20px;display:flex;flex-direction:column;gap:16px}
 section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
 h2{font-size:15px;margin:4px 0 10px} table{border-collapse:collapse;width:100%}
 td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
 th{font-weight:600;color:#556} .mono{font-family:ui-monospace,monospace;font-size:12px}
 a.mono{white-space:nowrap} .kv .mono{word-break:break-all;white-space:normal}
 .kv th{width:150px;white-space:nowrap} .kv td,.kv th{padding:4px 8px} .num,.amount{text-align:right;white-space:nowrap}
 .pair{display:grid;grid-template-columns:3fr 2fr;gap:16px;align-items:start}
 .split{display:grid;grid-template-columns:1fr 420px;gap:16px;align-items:start}
 #payouts a.mono{white-space:normal;word-break:break-all}
 .cellbox{padding:8px;border:1px solid #eee;border-radius:6px;text-align:center}
 .dispute,.error{color:#a4262c;font-weight:600} .muted,.note{color:#667} .note{font-size:13px}
 .notice{padding:10px 12px;background:#fff4ce;border-radius:6px}
 .phase{display:inline-block;padding:2px 8px;border-radius:10px;background:#e8eefc;color:#2448b3;font-weight:600}
 .badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;background:#eceef2;color:#445}
 .badge.winner{background:#dff3e4;color:#1c6b35} .badge.refused{background:#fde7e9;color:#a4262c}
 .badge.scored{background:#e8eefc;color:#2448b3} .badge.not-listed{background:#fff1db;color:#8a5300}
 tr.st-winner td{background:#f3fbf5} .reason{font-family:ui-monospace,monospace;font-size:12px;color:#a4262c}
 .in{color:#1c6b35} .out{color:#a4262c}
 .score{font-weight:700} .score a{color:inherit} svg text{font:9px ui-monospace,monospace}
</style></head><body>
<header><h1><a href="#/">PoNAS explorer</a></h1><span id="chain">connecting…</span><span id="tip"></span>
 <form id="search" role="search"><input id="q" type="search" aria-label="search"
  placeholder="height, block or tx hash, pn1… address"><button type="submit">Search</button></form></header>
<main id="home">
 <section><h2>Latest blocks</h2><table id="blocks"><thead><tr><th>Height</th><th>Block</th><th>Architecture</th>
 <th>Score (correct of test set)</th><th>Task epoch</th><th>Paid to</th><th>Payouts</th></tr></thead><tbody></tbody></table></section>
 <div>
  <section><h2>Round in progress</h2><div id="round">–</div></section>
  <section style="margin-top:16px"><h2>Peers</h2><table id="peers"><tbody></tbody></table></section>
 </div>
</main>
<main id="view" hidden></main>
<script>
const OPS={none:"none",skip_connect:"skip",nor_conv_1x1:"1x1",nor_conv_3x3:"3x3",avg_pool_3x3:"pool"};
const COL={none:"#bbb",skip_connect:"#2a9d8f",nor_conv_1x1:"#e9c46a",nor_conv_3x3:"#e76f51",avg_pool_3x3:"#457b9d"};
const $=id=>document.getElementById(id);
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
function cell(g,k=1){ // |op~0|+|op~0|op~1|+|op~0|op~1|op~2|  -> an SVG of the 4-node cell, k times the size
  if(!g) return "–";
  const edges=[]; g.split("+").forEach((grp,j)=>grp.split("|").filter(Boolean).forEach(t=>{
    const [op,i]=t.split("~"); edges.push({from:+i,to:j+1,op});}));
  const X=[14,62,110,158], Y=22;
  let s=`<svg width="${172*k}" height="${52*k}" viewBox="0 0 172 52" role="img" aria-label="${esc(g)}">`;
  edges.forEach(e=>{const x1=X[e.from],x2=X[e.to],h=(e.to-e.from-1)*11+(e.to-e.from>1?6:0);
    const mx=(x1+x2)/2, my=Y-h-4; const d=e.to-e.from===1?`M${x1},${Y} L${x2},${Y}`:`M${x1},${Y} Q${mx},${my-8} ${x2},${Y}`;
    s+=`<path d="${d}" stroke="${COL[e.op]||"#999"}" stroke-width="${e.op==="none"?1:2.5}" fill="none" ${e.op==="none"?'stroke-dasharray="3 2"':""}><title>${esc(e.op)} ${e.from}→${e.to}</title></path>`;
    if(e.to-e.from===1) s+=`<text x="${mx-8}" y="${Y+14}">${esc(OPS[e.op]||e.op)}</text>`;});
  X.forEach((x,i)=>s+=`<circle cx="${x}" cy="${Y}" r="6" fill="#1d2330"/><text x="${x-3}" y="${Y+3}" fill="#fff">${i}</text>`);
  return s+"</svg>";}
async function j(path){ // the API's answer, or an Error carrying its reason code
  const r=await fetch(path); let body=null; try{body=await r.json()}catch(e){}
  if(!r.ok){const err=(body&&body.error)||{}; const e=new Error(err.detail||err.reason||`${path}: HTTP ${r.status}`);
    e.reason=err.reason||`http-${r.status}`; e.status=r.status; throw e;}
  return body;}
function short(h){return h?h.slice(0,12)+"…":"–"}
function coins(n){ // base units -> coins, exact: 8 decimals, trailing zeros cut (as consensus.amounts.format_amount)
  const sign=n<0?"-":""; n=Math.abs(n); const f=String(n%1e8).padStart(8,"0").replace(/0+$/,"");
  return sign+Math.floor(n/1e8)+(f?"."+f:"");}
function when(t){return t==null?"–":new Date(t*1000).toISOString().slice(0,19).replace("T"," ")+" UTC"}
function outOf(s,n){return n?`${s} / ${n} <small>(${(100*s/n).toFixed(1)}%)</small>`:esc(s)}
function score(b){return b.test_set_size?outOf(b.score,b.test_set_size):esc(b.score)}
const mono=t=>`<span class="mono">${esc(t)}</span>`;
const blk=(h,text)=>`<a class="mono" href="#/block/${h}">${esc(text??short(h))}</a>`;
const addr=(a,full)=>a?`<a class="mono" href="#/address/${a}">${esc(full?a:short(a))}</a>`:"–";
const txl=(h,text)=>`<a class="mono" href="#/tx/${h}">${esc(text??short(h))}</a>`;
const kv=(k,v,id)=>`<tr><th>${k}</th><td${id?` id="${id}"`:""}>${v}</td></tr>`;
function disputeText(d){switch(d.kind){
  case "left-out-commitment":return `a commitment by ${short(d.miner)} seen ${d.seen_before_close_s} s before the close was left out of it`;
  case "left-out-candidate":return `a candidate claiming ${d.score} seen ${d.seen_before_end_s} s before the reveal window ended was left out of the reveal set`;
  case "two-reveal-sets":return "the closer signed two different reveal sets for one close";
  case "no-reveal-set":return `no reveal set came within ${d.waited_s} s of the reveal window's end`;
  case "listed-candidate-unavailable":return `a listed candidate claiming ${d.score} was never supplied`;
  case "reveal-entry-mismatch":return "a reveal set entry did not match its block";
  default:return esc(String(d.kind));}}

// --- the home -------------------------------------------------------------------------------
async function home(st){
  const bl=await j("/api/v1/blocks?limit=15");
  if(parts().length) return;
  document.querySelector("#blocks tbody").innerHTML=bl.blocks.map(b=>`<tr class="block-row">
    <td><a href="#/block/${b.hash}">${b.height}</a></td><td>${blk(b.hash)}</td><td>${b.height?cell(b.genotype):"genesis"}</td>
    <td class="score">${b.height?`<a href="#/round/${b.height}">${score(b)}</a>`:""}</td><td class="epoch">${b.task_epoch??"–"}</td>
    <td>${b.payouts.length?addr(b.payouts[0].address):"–"}</td>
    <td class="mono">${b.payouts.map(p=>`${addr(p.address)} ${coins(p.amount)}`).join("<br>")||"–"}</td></tr>`).join("");
  const r=st.round;
  $("round").innerHTML=r?`<p><a href="#/round/${r.height}">Round <b id="round-height">${r.height}</b></a> <span class="phase">${esc(r.phase)}</span></p>
    <p>${r.commitments} commitments · ${r.candidates} candidates · attempt ${r.attempt}</p>
    <p>commit deadline ${new Date(r.deadline*1000).toLocaleTimeString()}${r.reveal_end?` · reveal ends ${new Date(r.reveal_end*1000).toLocaleTimeString()}`:""}</p>
    <p class="mono">task ${esc(r.task)}${r.task_epoch==null?"":` epoch ${r.task_epoch}`} · test set ${r.test_set_size} · space ${esc(r.space)} · recipe ${esc(r.recipe)}</p>
    ${(r.disputes||[]).length?`<p id="disputes" class="dispute">${r.disputes.length} dispute${r.disputes.length>1?"s":""} with the closer; the latest: round ${r.disputes[0].height}, ${disputeText(r.disputes[0])}</p>`:""}
    ${r.reveal_set?`<p id="reveal-set">reveal set: ${r.reveal_set.entries} candidate${r.reveal_set.entries===1?"":"s"} listed by the closer</p>`:""}`:"this chain has no rounds";
  const peers=await j("/api/v1/peers");
  $("peers").querySelector("tbody").innerHTML=peers.length?peers.map(p=>`<tr><td class="mono">${esc(p.host)}:${p.port}</td><td>${esc(p.direction)}</td><td>height ${p.height}</td></tr>`).join(""):"<tr><td>no peers</td></tr>";
}

// --- the pages ------------------------------------------------------------------------------
function txRows(txs){
  return txs.length?`<table id="txs"><thead><tr><th>Transaction</th><th>From</th><th>To</th><th class="amount">Amount (coins)</th>
    <th class="amount">Fee (coins)</th><th class="num">Nonce</th></tr></thead><tbody>${txs.map(t=>`<tr class="tx-row">
    <td>${txl(t.hash)}</td><td>${addr(t.from)}</td><td>${addr(t.to)}</td><td class="amount">${coins(t.amount)}</td>
    <td class="amount">${coins(t.fee)}</td><td class="num">${t.nonce}</td></tr>`).join("")}</tbody></table>`
    :`<p class="muted" id="no-txs">no transfers in this block</p>`;}
function payoutRows(payouts){
  const total=payouts.reduce((a,p)=>a+p.amount,0);
  return `<table id="payouts"><thead><tr><th>Paid to</th><th class="amount">Amount (coins)</th></tr></thead><tbody>
    ${payouts.map(p=>`<tr class="payout-row"><td>${addr(p.address,true)}</td><td class="amount">${coins(p.amount)}</td></tr>`).join("")}
    </tbody><tfoot><tr><th>Total</th><th class="amount" id="payout-total">${coins(total)}</th></tr></tfoot></table>`;}

async function blockPage(ref){
  const b=await j(`/api/v1/blocks/${encodeURIComponent(ref)}`), h=b.header, r=b.round;
  document.title=`Block ${b.height} · PoNAS explorer`;
  return `<section id="block-page"><h2>Block ${b.height}${b.canonical?"":' <span class="dispute">not on the canonical chain</span>'}</h2>
   <div class="split"><table class="kv" id="block-fields">
    ${kv("Height",b.height,"b-height")}${kv("Hash",mono(b.hash),"b-hash")}
    ${kv("Parent",b.height?blk(h.parent,h.parent):mono(h.parent),"b-parent")}
    ${kv("Time",when(b.timestamp),"b-time")}
    ${r?kv("Round",`<a href="#/round/${b.height}">round ${b.height}</a> · commitment index ${r.commitment_index} of ${r.commitments} in the close · beacon key ${r.key_index}`,"b-round"):""}
    ${kv("Miner",b.miner?addr(b.miner,true):"–","b-miner")}
    ${b.height?kv("Score",score(b),"b-score"):""}
    ${kv("Task epoch",b.task_epoch??"–","b-epoch")}
    ${kv("Architecture",b.genotype?mono(b.genotype):"–","b-genotype")}${kv("Seed",h.seed,"b-seed")}
    ${kv("Weights hash",mono(h.weights_hash))}${kv("State root",mono(h.state_root),"b-state-root")}
    ${kv("Transfers root",mono(h.txs_root))}${kv("Payouts root",mono(h.payouts_root))}
   </table><div><div class="cellbox" id="b-cell">${b.height?cell(b.genotype,2.2)+'<p class="note">the cell: nodes 0–3, an edge per operation</p>':"genesis"}</div>
   <h2 style="margin-top:14px">Payouts</h2>${payoutRows(b.payouts)}</div></div></section>
  <section><h2>Transfers (${b.transactions.length})</h2>${txRows(b.transactions)}</section>`;}

async function addressPage(a,before){
  const q=encodeURIComponent(a), acc=await j(`/api/v1/accounts/${q}`);
  const hist=await j(`/api/v1/accounts/${q}/history?limit=50${before?`&before=${encodeURIComponent(before)}`:""}`);
  document.title=`${short(acc.address)} · PoNAS explorer`;
  const row=(i,pending)=>{const other=i.kind==="transfer"?(i.direction==="out"?`to ${addr(i.to)}`:`from ${addr(i.from)}`)
      :i.kind==="coinbase"?"payout of its block":"genesis prefund";
    return `<tr class="${pending?"pending-row":"hist-row"}"><td>${pending?"waiting":blk(i.block,String(i.height))}</td><td>${when(i.time)}</td>
      <td>${esc(i.kind)}</td><td>${other}</td><td class="amount ${i.delta<0?"out":"in"}">${i.delta>0?"+":""}${coins(i.delta)}</td>
      <td>${i.hash?txl(i.hash):"–"}</td></tr>`;};
  const rows=hist.pending.map(i=>row(i,true)).concat(hist.items.map(i=>row(i,false)));
  return `<section id="address-page"><h2>Address</h2><table class="kv">
    ${kv("Address",mono(acc.address),"a-address")}${kv("Balance",`<b>${coins(acc.balance)}</b> coins`,"a-balance")}
    ${kv("Nonce",`${acc.nonce}${acc.pending_nonce!==acc.nonce?` (${acc.pending_nonce} with the waiting transfers)`:""}`,"a-nonce")}</table></section>
   <section><h2>History</h2>${rows.length?`<table id="history"><thead><tr><th>Block</th><th>Time</th><th>Kind</th><th>With</th>
    <th class="amount">Change (coins)</th><th>Transaction</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
    :'<p class="muted" id="no-history">nothing has touched this address yet</p>'}
    ${hist.next?`<p><a id="older" href="#/address/${acc.address}/${hist.next}">older →</a></p>`:""}</section>`;}

const STATUS={"winner":"winner","scored":"scored","refused":"refused","not-listed":"not listed","not-scored":"not scored"};
async function roundPage(height){
  const r=await j(`/api/v1/rounds/${encodeURIComponent(height)}`), n=r.test_set_size, c=r.close, rs=r.reveal_set;
  const live=r.status==="in-progress";
  document.title=`Round ${r.height} · PoNAS explorer`;
  const source={generate:"played locally by ponas chain generate: every candidate scored, no reveal set signed",
    block:"this node did not follow this round (it synced the block): only what the block carries is known"}[r.source];
  const board=r.candidates.length?`<table id="leaderboard"><thead><tr><th class="num">#</th><th>Candidate</th><th>Miner</th>
    <th class="num">Commitment</th><th>Claimed score</th><th>Scored by this node</th><th>Listed</th><th>Status</th></tr></thead><tbody>
    ${r.candidates.map(x=>`<tr class="cand-row st-${x.status}"><td class="num">${x.rank}</td><td>${x.known?blk(x.block):mono(short(x.block))}</td>
      <td>${addr(x.miner)}</td><td class="num">${x.index}</td><td class="claimed">${outOf(x.claimed,n)}</td>
      <td class="verified">${x.score==null?"–":outOf(x.score,n)}</td><td class="listed">${x.listed==null?"–":x.listed?"yes":"no"}</td><td class="status"><span class="badge ${x.status}">${STATUS[x.status]||esc(x.status)}</span>${x.reason?` <span class="reason">${esc(x.reason)}</span>`:""}</td></tr>`).join("")}
    </tbody></table><p class="note">Best claim first (claimed score, then the commitment's tie-break). Nodes score the listed claims best first and stop at the first that holds: a candidate below the winner is a claim only.</p>`
    :`<p class="muted" id="no-candidates">${live?"no candidates yet":"no candidates"}</p>`;
  const commits=r.commitments.items.length?`<table id="commitments"><thead><tr><th class="num">Index</th><th>Miner</th><th class="num">Seq</th>
    <th>Commitment</th><th>Seen by this node</th></tr></thead><tbody>${r.commitments.items.map(x=>`<tr class="commit-row">
    <td class="num">${x.index}</td><td>${addr(x.miner)}</td><td class="num">${x.seq}</td><td>${mono(short(x.hash))}</td><td>${when(x.seen)}</td></tr>`).join("")}
    </tbody></table>${r.commitments.truncated?`<p class="note">${r.source==="block"?"the block carries only its own commitment":"only the first ones are kept"}</p>`:""}`
    :`<p class="muted" id="no-commitments">${live?"no commitments yet":"no commitments"}</p>`;
  return `<section id="round-page"><h2>Round <span id="r-height">${r.height}</span> <span class="phase" id="r-status">${live?`in progress · ${esc(r.phase)}`:"decided"}</span></h2>
   <table class="kv">
    ${kv("Parent",blk(r.parent,r.parent),"r-parent")}
    ${live?"":kv("Winner",r.winner?blk(r.winner,r.winner)+(r.canonical?"":' <span class="dispute">no longer canonical</span>'):"–","r-winner")}
    ${live?kv("Commit deadline",when(r.deadline),"r-deadline")+(r.reveal_end?kv("Reveal window ends",when(r.reveal_end)):""):""}
    ${kv("Close",c?`beacon key ${c.key_index} · ${when(c.timestamp)} · ${c.commitments_count} commitment${c.commitments_count===1?"":"s"} · closer ${mono(short(c.closer))}`:"not closed yet","r-close")}
    ${kv("Reveal set",rs?`${rs.entries.length} candidate${rs.entries.length===1?"":"s"} listed by the closer · signed ${when(rs.timestamp)}`:(live?"not yet":"none"),"r-reveal")}
    ${kv("Attempt · test set",`${r.attempt}${r.attempt?" (a retry takes the beacon's next key)":""} · ${n} samples${r.task_epoch==null?"":` · task epoch ${r.task_epoch}`}`,"r-attempt")}
   </table>${source?`<p class="note" id="r-source">${source}</p>`:""}</section>
  <section><h2>Leaderboard (${r.candidates.length})</h2>${board}</section>
  <div class="pair"><section><h2>Commitments (<span id="r-commitments">${r.commitments.count}</span>)</h2>${commits}</section>
  ${rs?`<section><h2>Reveal set</h2><table id="reveal-entries"><thead><tr><th>Candidate</th><th>Claimed score</th><th class="num">Commitment</th></tr></thead><tbody>
    ${rs.entries.map(e=>`<tr class="reveal-row"><td>${mono(short(e.block))}</td><td>${outOf(e.score,n)}</td><td class="num">${e.index}</td></tr>`).join("")}</tbody></table>
    <p class="note">signed by the closer ${mono(short(rs.closer))} · set ${mono(short(rs.hash))}</p></section>`:`<section><h2>Reveal set</h2><p class="muted">${live?"not yet: the closer signs it when the reveal window ends":"none"}</p></section>`}</div>`;}

async function txPage(h){
  const t=await j(`/api/v1/tx/${encodeURIComponent(h)}`);
  document.title=`Transaction ${short(t.hash)} · PoNAS explorer`;
  const status=t.status==="confirmed"?`confirmed in block ${blk(t.block,String(t.height))} (position ${t.position}) · ${t.confirmations} confirmation${t.confirmations===1?"":"s"}`
    :"waiting in the mempool";
  const body=t.coinbase?`<section><h2>Coinbase payouts</h2>${payoutRows(t.coinbase)}</section>`:"";
  const x=t.tx;
  return `<section id="tx-page"><h2>${t.coinbase?"Coinbase":"Transfer"}</h2><table class="kv">
    ${kv("Hash",mono(t.hash),"t-hash")}${kv("Status",status,"t-status")}
    ${x?kv("From",addr(x.from,true),"t-from")+kv("To",addr(x.to,true),"t-to")+kv("Amount",`<b>${coins(x.amount)}</b> coins`,"t-amount")
      +kv("Fee",`${coins(x.fee)} coins`,"t-fee")+kv("Nonce",x.nonce,"t-nonce"):""}</table></section>${body}`;}

async function searchPage(q){
  $("q").value=q;
  try{
    const s=await j(`/api/v1/search?q=${encodeURIComponent(q)}`);
    location.replace(`#/${s.kind}/${encodeURIComponent(s.target)}`);
    return `<section><p class="muted">found ${esc(s.kind)} ${esc(s.target)}</p></section>`;
  }catch(e){
    if(e.reason!=="not-found"&&e.reason!=="bad-query") throw e;
    return `<section><h2>Search</h2><p id="search-result" class="notice" data-reason="${esc(e.reason)}">${e.reason==="not-found"
      ?`Nothing matches “${esc(q)}”: ${esc(e.message)}.`:`“${esc(q)}” is not something to search for: ${esc(e.message)}.`}</p></section>`;}}

// --- routing --------------------------------------------------------------------------------
const PAGES={block:blockPage,address:addressPage,round:roundPage,tx:txPage,search:searchPage};
function parts(){return location.hash.replace(/^#\/?/,"").split("/").filter(Boolean).map(decodeURIComponent)}
let shown=null, live=null;  // the route on screen; the route of an in-progress round page (refreshed)
async function show(){
  const [page,...args]=parts(), key=location.hash;
  $("home").hidden=!!page; $("view").hidden=!page; shown=key; live=null;
  if(!page){document.title="PoNAS explorer"; return refresh();}
  const v=$("view"); v.innerHTML='<section><p class="muted">loading…</p></section>';
  try{
    if(!PAGES[page]) throw Object.assign(new Error(`no page ${location.hash}`),{reason:"not-found"});
    const html=await PAGES[page](...args);
    if(shown!==key) return;  // the reader went elsewhere meanwhile
    v.innerHTML=html;
    if(page==="round"&&v.querySelector("#r-status").textContent.startsWith("in progress")) live=key;
  }catch(e){
    if(shown===key) v.innerHTML=`<section><h2>Not found</h2><p id="error" class="error">${esc(e.message)}${e.reason?` <span class="mono">(${esc(e.reason)})</span>`:""}</p></section>`;}}
async function refresh(){
  try{
    const st=await j("/api/v1/status");
    $("chain").textContent=`${st.chain_id} · ${st.engine} · ${st.peers} peer${st.peers===1?"":"s"}`;
    $("tip").innerHTML=`height ${st.height} · tip <a href="#/block/${st.tip}" style="color:inherit">${short(st.tip)}</a>`;
    if(!parts().length) await home(st);
    else if(live&&live===location.hash){const key=live, html=await roundPage(parts()[1]); if(live===key&&shown===key) $("view").innerHTML=html;}
  }catch(e){$("chain").textContent="node unreachable: "+e.message;}}
$("search").addEventListener("submit",e=>{e.preventDefault(); const q=$("q").value.trim();
  if(q) location.hash=`#/search/${encodeURIComponent(q)}`;});
window.addEventListener("hashchange",show);
show(); if(parts().length) refresh(); setInterval(refresh,2000);
</script></body></html>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")
