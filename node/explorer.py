"""The explorer page at ``/``: one self-contained HTML file (no build step) that reads the
node's own API: latest blocks with their architecture drawn as the NAS-Bench-201 cell, score,
winner and payouts; the round in progress; peers."""

from __future__ import annotations

from aiohttp import web

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PoNAS explorer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline}
 header h1{font-size:18px;margin:0} header span{opacity:.8}
 main{padding:16px 20px;display:grid;grid-template-columns:2fr 1fr;gap:16px}
 section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
 h2{font-size:15px;margin:4px 0 10px} table{border-collapse:collapse;width:100%}
 td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
 th{font-weight:600;color:#556} .mono{font-family:ui-monospace,monospace;font-size:12px}
 .dispute{color:#a4262c;font-weight:600}
 .phase{display:inline-block;padding:2px 8px;border-radius:10px;background:#e8eefc;color:#2448b3;font-weight:600}
 .score{font-weight:700} svg text{font:9px ui-monospace,monospace}
</style></head><body>
<header><h1>PoNAS explorer</h1><span id="chain">connecting…</span><span id="tip"></span></header>
<main>
 <section><h2>Latest blocks</h2><table id="blocks"><thead><tr><th>Height</th><th>Block</th><th>Architecture</th>
 <th>Score (correct of test set)</th><th>Task epoch</th><th>Paid to</th><th>Payouts</th></tr></thead><tbody></tbody></table></section>
 <div>
  <section><h2>Round in progress</h2><div id="round">–</div></section>
  <section style="margin-top:16px"><h2>Peers</h2><table id="peers"><tbody></tbody></table></section>
 </div>
</main>
<script>
const OPS={none:"none",skip_connect:"skip",nor_conv_1x1:"1x1",nor_conv_3x3:"3x3",avg_pool_3x3:"pool"};
const COL={none:"#bbb",skip_connect:"#2a9d8f",nor_conv_1x1:"#e9c46a",nor_conv_3x3:"#e76f51",avg_pool_3x3:"#457b9d"};
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
function cell(g){ // |op~0|+|op~0|op~1|+|op~0|op~1|op~2|  -> an SVG of the 4-node cell
  if(!g) return "–";
  const edges=[]; g.split("+").forEach((grp,j)=>grp.split("|").filter(Boolean).forEach(t=>{
    const [op,i]=t.split("~"); edges.push({from:+i,to:j+1,op});}));
  const X=[14,62,110,158], Y=22; let s=`<svg width="172" height="52" role="img" aria-label="${esc(g)}">`;
  edges.forEach((e,k)=>{const x1=X[e.from],x2=X[e.to],h=(e.to-e.from-1)*11+(e.to-e.from>1?6:0);
    const mx=(x1+x2)/2, my=Y-h-4; const d=e.to-e.from===1?`M${x1},${Y} L${x2},${Y}`:`M${x1},${Y} Q${mx},${my-8} ${x2},${Y}`;
    s+=`<path d="${d}" stroke="${COL[e.op]||"#999"}" stroke-width="${e.op==="none"?1:2.5}" fill="none" ${e.op==="none"?'stroke-dasharray="3 2"':""}><title>${esc(e.op)} ${e.from}→${e.to}</title></path>`;
    if(e.to-e.from===1) s+=`<text x="${mx-8}" y="${Y+14}">${esc(OPS[e.op]||e.op)}</text>`;});
  X.forEach((x,i)=>s+=`<circle cx="${x}" cy="${Y}" r="6" fill="#1d2330"/><text x="${x-3}" y="${Y+3}" fill="#fff">${i}</text>`);
  return s+"</svg>";}
async function j(path){const r=await fetch(path); if(!r.ok) throw new Error(path+" "+r.status); return r.json();}
function short(h){return h?h.slice(0,12)+"…":"–"}
function disputeText(d){switch(d.kind){
  case "left-out-commitment":return `a commitment by ${short(d.miner)} seen ${d.seen_before_close_s} s before the close was left out of it`;
  case "left-out-candidate":return `a candidate claiming ${d.score} seen ${d.seen_before_end_s} s before the reveal window ended was left out of the reveal set`;
  case "two-reveal-sets":return "the closer signed two different reveal sets for one close";
  case "no-reveal-set":return `no reveal set came within ${d.waited_s} s of the reveal window's end`;
  case "listed-candidate-unavailable":return `a listed candidate claiming ${d.score} was never supplied`;
  case "reveal-entry-mismatch":return "a reveal set entry did not match its block";
  default:return esc(String(d.kind));}}
function score(b){return b.test_set_size?`${b.score} / ${b.test_set_size} <small>(${(100*b.score/b.test_set_size).toFixed(1)}%)</small>`:esc(b.score)}
async function refresh(){
  try{
    const st=await j("/api/v1/status");
    document.getElementById("chain").textContent=`${st.chain_id} · ${st.engine} · ${st.peers} peer${st.peers===1?"":"s"}`;
    document.getElementById("tip").textContent=`height ${st.height} · tip ${short(st.tip)}`;
    const bl=await j("/api/v1/blocks?limit=15");
    document.querySelector("#blocks tbody").innerHTML=bl.blocks.map(b=>`<tr class="block-row">
      <td>${b.height}</td><td class="mono">${short(b.hash)}</td><td>${b.height?cell(b.genotype):"genesis"}</td>
      <td class="score">${b.height?score(b):""}</td><td class="epoch">${b.task_epoch??"–"}</td><td class="mono">${b.payouts.length?short(b.payouts[0].address):"–"}</td>
      <td class="mono">${b.payouts.map(p=>`${short(p.address)} ${(p.amount/1e8).toFixed(8).replace(/\.?0+$/,"")}`).join("<br>")||"–"}</td></tr>`).join("");
    const r=st.round;
    document.getElementById("round").innerHTML=r?`<p>Round <b id="round-height">${r.height}</b> <span class="phase">${esc(r.phase)}</span></p>
      <p>${r.commitments} commitments · ${r.candidates} candidates · attempt ${r.attempt}</p>
      <p>commit deadline ${new Date(r.deadline*1000).toLocaleTimeString()}${r.reveal_end?` · reveal ends ${new Date(r.reveal_end*1000).toLocaleTimeString()}`:""}</p>
      <p class="mono">task ${esc(r.task)}${r.task_epoch==null?"":` epoch ${r.task_epoch}`} · test set ${r.test_set_size} · space ${esc(r.space)} · recipe ${esc(r.recipe)}</p>
      ${(r.disputes||[]).length?`<p id="disputes" class="dispute">${r.disputes.length} dispute${r.disputes.length>1?"s":""} with the closer; the latest: round ${r.disputes[0].height}, ${disputeText(r.disputes[0])}</p>`:""}
      ${r.reveal_set?`<p id="reveal-set">reveal set: ${r.reveal_set.entries} candidate${r.reveal_set.entries===1?"":"s"} listed by the closer</p>`:""}`:"this chain has no rounds";
    const peers=await j("/api/v1/peers");
    document.querySelector("#peers tbody").innerHTML=peers.length?peers.map(p=>`<tr><td class="mono">${esc(p.host)}:${p.port}</td><td>${esc(p.direction)}</td><td>height ${p.height}</td></tr>`).join(""):"<tr><td>no peers</td></tr>";
  }catch(e){document.getElementById("chain").textContent="node unreachable: "+e.message;}
}
refresh(); setInterval(refresh,2000);
</script></body></html>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")
