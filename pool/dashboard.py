"""The pool manager's pages: the dashboard at ``/`` and a worker's page at ``/worker/{id}``.

Each page is one self-contained HTML string (no build step, no external assets, vanilla JS) in
the look of the node's explorer (``node/explorer.py``): a dark header bar, white cards on a
light background, the system fonts. The pages read the manager's JSON (``/api/pool`` and
``/api/pool/workers/{id}``, see :meth:`pool.manager.Manager.snapshot` and
:meth:`pool.manager.Manager.worker_snapshot`), which keeps amounts in base units; every amount a
person sees is in coins (8 decimals, trailing zeros dropped, as ``consensus.amounts.format_amount``
writes them, computed on the integer's digits: no float rounding).

Also here: :class:`Series`, the bounded time series of the dashboard's chart (shares accepted
and refused, trainings reported, per 10-second bucket over the last hour), cheap enough to count
every share of a busy pool.
"""

from __future__ import annotations

__all__ = ["DASHBOARD_PAGE", "WORKER_PAGE", "Series", "SERIES_BUCKET_S", "SERIES_BUCKETS", "RECENT_SHARES"]

#: The chart's bucket width (seconds) and how many buckets are kept: one hour.
SERIES_BUCKET_S = 10
SERIES_BUCKETS = 360
#: The recent shares (accepted, refused, verified, voided) kept per worker for its page.
RECENT_SHARES = 20


class Series:
    """Counts per fixed time bucket in a ring of ``buckets`` slots: bucket ``b`` (the times
    ``[b * width, (b + 1) * width)``) lives in slot ``b % buckets``, which a later bucket reuses
    (its counts start again from zero). Counting is O(1) and allocates nothing; the memory is
    fixed; an event more than ``buckets`` buckets older than a later one is dropped."""

    __slots__ = ("width", "size", "_bucket", "_accepted", "_refused", "_trainings")

    def __init__(self, width: int = SERIES_BUCKET_S, buckets: int = SERIES_BUCKETS) -> None:
        if width < 1 or buckets < 1:
            raise ValueError("a series has buckets of at least 1 s, at least one of them")
        self.width, self.size = width, buckets
        self._bucket = [-1] * buckets  # the bucket each slot holds now (-1: none yet)
        self._accepted = [0] * buckets
        self._refused = [0] * buckets
        self._trainings = [0] * buckets

    def _slot(self, now: float) -> int:
        b = int(now // self.width)
        i = b % self.size
        held = self._bucket[i]
        if held != b:
            if held > b:
                return -1  # older than the window that slot already moved on to
            self._bucket[i] = b
            self._accepted[i] = self._refused[i] = self._trainings[i] = 0
        return i

    def accepted(self, now: float) -> None:
        i = self._slot(now)
        if i >= 0:
            self._accepted[i] += 1

    def refused(self, now: float) -> None:
        i = self._slot(now)
        if i >= 0:
            self._refused[i] += 1

    def trainings(self, now: float, n: int) -> None:
        i = self._slot(now)
        if i >= 0 and n > 0:
            self._trainings[i] += n

    def buckets(self, now: float, since: float | None = None) -> list[list[int]]:
        """``[start time, accepted, refused, trainings]`` per bucket, oldest first, from the
        bucket of ``since`` (or the oldest kept) to the bucket of ``now``, empty buckets
        included: never more than ``buckets`` of them."""
        last = int(now // self.width)
        first = last - self.size + 1
        if since is not None:
            first = max(first, min(last, int(since // self.width)))
        out = []
        for b in range(first, last + 1):
            i = b % self.size
            if self._bucket[i] == b:
                out.append([b * self.width, self._accepted[i], self._refused[i], self._trainings[i]])
            else:
                out.append([b * self.width, 0, 0, 0])
        return out


# --- the pages ------------------------------------------------------------------------------------

# The explorer's look (node/explorer.py): the same header bar, background, cards and fonts.
_STYLE = r"""
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:18px;margin:0} header h1 a{color:#fff;text-decoration:none} header span{opacity:.8}
 main{padding:16px 20px;display:grid;grid-template-columns:minmax(0,2fr) minmax(0,1fr);gap:16px;align-items:start}
 .col{display:flex;flex-direction:column;gap:16px;min-width:0}
 section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
 h2{font-size:15px;margin:4px 0 10px} table{border-collapse:collapse;width:100%}
 td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
 th{font-weight:600;color:#556} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
 .mono{font-family:ui-monospace,monospace;font-size:12px} .small{font-size:12px;color:#667} .nowrap{white-space:nowrap}
 .phase{display:inline-block;padding:2px 8px;border-radius:10px;background:#e8eefc;color:#2448b3;font-weight:600}
 .badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;background:#eef0f3;color:#445}
 .badge.confirmed,.badge.verified,.badge.accepted{background:#e3f4e6;color:#24663a}
 .badge.pending{background:#fdf3d8;color:#8a6100} .badge.orphaned,.badge.refused,.badge.voided,
 .badge.banned,.badge.underpaid,.badge.withholding{background:#fbe4e4;color:#a4262c}
 .badge.left,.badge.silent{background:#eef0f3;color:#556}
 .flag{color:#a4262c;font-weight:600} .err{color:#a4262c;font-weight:600} .star{color:#c99700;font-weight:700}
 .swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
 a{color:#2448b3}
"""

_COMMON_JS = r"""
const PALETTE=["#2a9d8f","#e76f51","#457b9d","#8e5ea2","#c08a00","#3a7d44","#c2185b","#5c6bc0","#00838f","#8d6e63","#7b8d00","#d35400"];
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]))}
// base units -> coins, on the integer's digits (8 decimals, trailing zeros dropped: format_amount)
function coins(n){if(n==null)return "–";const s=String(Math.abs(n)).padStart(9,"0");const f=s.slice(-8).replace(/0+$/,"");
  return (n<0?"-":"")+s.slice(0,-8)+(f?"."+f:"");}
function ago(s){s=Math.max(0,s);return s<1?"just now":s<60?Math.floor(s)+" s ago":s<3600?Math.floor(s/60)+" min ago":
  s<86400?Math.floor(s/3600)+" h ago":Math.floor(s/86400)+" d ago";}
function short(h,n){return h?h.slice(0,n||12)+"…":"–"}
function parts(id){const i=id.indexOf(".");return [id.slice(0,i),id.slice(i+1)];}
function label(id){if(!id)return "unassigned";const p=parts(id);return p[1]+" · "+p[0].slice(0,9)+"…";}
function pct(ppm){return (ppm/1e4)+"%"}
const OPS={none:"none",skip_connect:"skip",nor_conv_1x1:"1x1",nor_conv_3x3:"3x3",avg_pool_3x3:"pool"};
function geno(g){return g==null?"–":g.replace(/[a-z_0-9]+(?=~)/g,op=>OPS[op]||op)} // the explorer's short operation names
function link(id){return `<a class="member-link" href="/worker/${encodeURIComponent(id)}">${esc(label(id))}</a>`}
async function j(path){const r=await fetch(path);const d=await r.json();
  if(!r.ok){const e=new Error((d.error&&d.error.reason)||("HTTP "+r.status));e.data=d;throw e;}return d;}
"""

DASHBOARD_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PoNAS pool</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>""" + _STYLE + r"""
 .kv{display:grid;grid-template-columns:auto minmax(0,1fr);gap:4px 12px;margin:0} .kv dt{color:#556;white-space:nowrap}
 .kv dd{margin:0;overflow-wrap:anywhere} #members{font-size:13px} #members td,#members th{padding:6px 5px}
 main.wide{grid-template-columns:minmax(0,7fr) minmax(0,3fr)}
 .map{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:4px}
 .map.dense{grid-template-columns:repeat(auto-fill,minmax(14px,1fr));gap:2px}
 .tile{position:relative;border-radius:4px;padding:5px 7px 9px;color:#fff;min-height:44px;font-size:11px;line-height:1.3;overflow:hidden}
 .map.dense .tile{min-height:14px;padding:0}
 .tile .range{font-family:ui-monospace,monospace;opacity:.85;white-space:nowrap} .tile .holder{font-weight:700;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
 .tile .bk{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;opacity:.95}
 .tile .stripe{position:absolute;left:0;right:0;bottom:0;height:5px}
 .tile.unassigned{background:repeating-linear-gradient(45deg,#d8dbe0,#d8dbe0 6px,#e6e8ec 6px,#e6e8ec 12px);color:#556}
 .tile.high{box-shadow:inset 0 0 0 3px #ffd54a} .tile .star{color:#ffd54a;font-weight:700}
 .legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:8px;font-size:12px;color:#445}
 .why{font-size:12px;color:#667} #chart svg text{font:10px system-ui,sans-serif;fill:#556}
 #alerts{list-style:none;margin:0;padding:0} #alerts li{padding:5px 0;border-bottom:1px solid #eee}
</style></head><body>
<header><h1>PoNAS pool</h1><span id="summary-line">connecting…</span><span id="round-line"></span></header>
<main class="wide">
 <div class="col">
  <section><h2>Search space</h2><div id="map-info" class="small"></div><div id="map" class="map"></div>
   <div id="legend" class="legend"></div></section>
  <section><h2>Members</h2><table id="members"><thead><tr><th>Worker</th><th class="n">Accepted</th>
   <th class="n">Refused</th><th>Last seen</th><th class="n">Trainings /s</th><th class="n">Pending¹</th>
   <th class="n">Paid¹</th><th>Subspaces</th><th>Withholding²</th></tr></thead><tbody></tbody></table>
   <p class="small">¹ coins, of the worker's payout address (its workers share it): pending is what the address gets if the
   pool wins now, paid what the blocks won paid it (orphaned ones excepted). ² the p-value that the worker reports this few
   of the pool's top results by chance; flagged below 0.01 (over four rounds or more), it gets no finder's bonus.</p></section>
  <section><h2>Blocks won</h2><table id="blocks"><thead><tr><th>Height</th><th>Block</th><th>Status</th>
   <th class="n">Reward<br><span class="small">coins</span></th><th>Payouts (coins)</th></tr></thead><tbody></tbody></table></section>
 </div>
 <div class="col">
  <section><h2>Pool</h2><dl id="pool" class="kv"></dl></section>
  <section><h2>Shares and trainings, last hour</h2><div id="chart"></div></section>
  <section><h2>Alerts</h2><ul id="alerts"></ul></section>
  <section><h2>Banned</h2><table id="banned"><tbody></tbody></table></section>
 </div>
</main>
<script>""" + _COMMON_JS + r"""
function colours(s){const ids=new Set();(s.space?s.space.subspaces:[]).forEach(t=>{if(t.primary)ids.add(t.primary);if(t.backup)ids.add(t.backup);});
  s.members.forEach(m=>ids.add(m.member));const out={};[...ids].sort().forEach((id,i)=>out[id]=PALETTE[i%PALETTE.length]);return out;}
function map(s,col){
  const el=document.getElementById("map"),info=document.getElementById("map-info");
  if(!s.space){info.textContent="no round yet: the space is partitioned when the pool has a round";el.innerHTML="";return;}
  const sp=s.space,tiles=sp.subspaces,dense=tiles.length>48;
  const open=tiles.filter(t=>!t.primary).length,high=tiles.filter(t=>t.high_reward).length;
  info.innerHTML=`<span id="space-name">${esc(sp.name)}</span>: ${sp.size.toLocaleString("en")} architectures in <b id="tile-count">${tiles.length}</b> subspaces`+
    ` (plan ${sp.plan})`+(high?` · <span class="star">★</span> ${high} of high-reward members`:"")+(open?` · ${open} unassigned`:"");
  if(!tiles.length){el.innerHTML=`<p class="small">no live member: the whole space waits for the next plan</p>`;}
  el.className="map"+(dense?" dense":"");
  el.innerHTML=tiles.map((t,i)=>{
    const tip=`subspace ${i}: architectures ${t.start}–${t.stop-1}\nprimary: ${t.primary||"unassigned"}\nbackup: ${t.backup||"none"}`+
      (t.high_reward?"\nhigh-reward member":"")+(t.best?`\n${t.best} of the pool's best results`:"");
    const cls="tile"+(t.primary?"":" unassigned")+(t.high_reward?" high":"");
    const bg=t.primary?` style="background:${col[t.primary]}"`:"";
    const body=dense?"":`<div class="range">${t.start}–${t.stop-1}${t.best?` <span title="the pool's best results in it">◆${t.best}</span>`:""}</div>`+
      `<div class="holder">${t.high_reward?'<span class="star">★</span> ':""}${esc(label(t.primary))}</div>`+
      (t.backup?`<div class="bk">backup ${esc(label(t.backup))}</div>`:"");
    const stripe=t.backup?`<div class="stripe" style="background:${col[t.backup]}"></div>`:"";
    return `<div class="${cls}" data-start="${t.start}" data-stop="${t.stop}" data-primary="${esc(t.primary||"")}" `+
      `data-backup="${esc(t.backup||"")}" title="${esc(tip)}"${bg}>${body}${stripe}</div>`;}).join("");
  const ids=Object.keys(col).sort();
  document.getElementById("legend").innerHTML=ids.map(id=>`<span><span class="swatch" style="background:${col[id]}"></span>${esc(label(id))}</span>`).join("")+
    `<span><span class="swatch" style="background:#d8dbe0"></span>unassigned</span><span><span class="swatch" style="background:#ffd54a"></span>high-reward member</span>`+
    `<span>stripe: its backup</span><span>◆ the pool's best results</span>`;}
function chart(series,now){
  const b=series.buckets,w=series.bucket_s;if(!b.length)return "no data yet";
  const W=380,H=150,L=34,R=40,T=16,B=20,n=b.length,bw=(W-L-R)/n,ih=H-T-B;
  const maxC=Math.max(1,...b.map(x=>x[1]+x[2])),rates=b.map(x=>x[3]/w),maxR=Math.max(0.1,...rates);
  let s=`<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="shares accepted and refused, trainings per second">`;
  for(let k=0;k<=4;k++){const y=T+ih*k/4;s+=`<line x1="${L}" x2="${W-R}" y1="${y}" y2="${y}" stroke="#eee"/>`;}
  b.forEach((x,i)=>{const x0=L+i*bw,ha=ih*x[1]/maxC,hr=ih*x[2]/maxC,bwid=Math.max(0.6,bw-0.6);
    s+=`<g class="bucket" data-t="${x[0]}" data-accepted="${x[1]}" data-refused="${x[2]}" data-trainings="${x[3]}">`+
      (x[1]?`<rect x="${x0.toFixed(1)}" y="${(T+ih-ha).toFixed(1)}" width="${bwid.toFixed(1)}" height="${ha.toFixed(1)}" fill="#3a7d44"/>`:"")+
      (x[2]?`<rect x="${x0.toFixed(1)}" y="${(T+ih-ha-hr).toFixed(1)}" width="${bwid.toFixed(1)}" height="${hr.toFixed(1)}" fill="#d1495b"/>`:"")+`</g>`;});
  const pts=rates.map((r,i)=>`${(L+(i+0.5)*bw).toFixed(1)},${(T+ih-ih*r/maxR).toFixed(1)}`).join(" ");
  s+=`<polyline points="${pts}" fill="none" stroke="#2448b3" stroke-width="1.6"/>`;
  const mins=Math.round((now-b[0][0])/60);
  s+=`<text x="${L-4}" y="${T+4}" text-anchor="end">${maxC}</text><text x="${L-4}" y="${T+ih}" text-anchor="end">0</text>`+
    `<text x="${W-R+4}" y="${T+4}">${maxR.toFixed(1)}/s</text><text x="${W-R+4}" y="${T+ih}">0</text>`+
    `<text x="${L}" y="${H-5}">${mins>=1?mins+" min ago":(now-b[0][0]).toFixed(0)+" s ago"}</text><text x="${W-R}" y="${H-5}" text-anchor="end">now</text>`+
    `<rect x="${L}" y="2" width="8" height="8" fill="#3a7d44"/><text x="${L+11}" y="10">accepted</text>`+
    `<rect x="${L+62}" y="2" width="8" height="8" fill="#d1495b"/><text x="${L+73}" y="10">refused, per ${w} s</text>`+
    `<line x1="${L+172}" x2="${L+186}" y1="6" y2="6" stroke="#2448b3" stroke-width="2"/><text x="${L+190}" y="10">trainings/s</text>`;
  return s+"</svg>";}
function memberRow(m,s,col){
  const sc=m.schedule||{},why=Object.entries(m.rejects||{}).map(([r,n])=>`<div class="nowrap">${esc(r)} ${n}</div>`).join("");
  const subs=(sc.subspaces||[]).length,bsubs=(sc.backup_subspaces||[]).length,addr=parts(m.member)[0];
  const backup=sc.backed_up_by?`backed up by ${esc(label(sc.backed_up_by))}`:(sc.backup_of||[]).length?`backs up ${sc.backup_of.map(x=>esc(label(x))).join(", ")}`:"";
  const wh=sc.flagged?`<span class="flag">FLAGGED p=${sc.withholding_p.toExponential(1)}</span>`:sc.withholding_p==null?"–":`p=${sc.withholding_p.toFixed(2)}`;
  return `<tr class="member-row" data-member="${esc(m.member)}">`+
    `<td class="worker"><span class="swatch" style="background:${col[m.member]||"#999"}"></span><a class="member-link" href="/worker/${encodeURIComponent(m.member)}">${esc(m.worker)}</a>`+
    `${m.silent?' <span class="badge silent">silent</span>':""}<div class="mono small">${esc(short(addr,12))}</div></td>`+
    `<td class="n accepted">${m.accepted}</td>`+
    `<td class="n refused"><b>${m.rejected}</b>${why?` <div class="why">${why}</div>`:""}</td>`+
    `<td class="last-seen nowrap">${ago(s.now-m.last_seen)}</td><td class="n throughput">${m.throughput.toFixed(2)}</td>`+
    `<td class="n pending">${coins(m.expected_payout)}</td><td class="n paid">${coins(m.paid)}</td>`+
    `<td class="subspaces">${subs}${sc.high_reward?' <span class="star" title="high-reward member">★</span>':""}${bsubs?` <span class="small">+${bsubs} as backup</span>`:""}`+
    `${backup?` <div class="small backup">${backup}</div>`:""}</td><td class="withholding nowrap">${wh}</td></tr>`;}
function blockRow(b,fee){
  const shown=b.payouts.slice(0,4).map(p=>`<span class="mono">${short(p[0])}</span> ${coins(p[1])}${p[0]===fee?' <span class="small">(pool fee)</span>':""}`).join("<br>");
  const more=b.payouts.length>4?`<br><span class="small">and ${b.payouts.length-4} more</span>`:"";
  return `<tr class="block-row" data-height="${b.height}"><td>${b.height}</td><td class="mono">${short(b.hash)}</td>`+
    `<td><span class="badge ${esc(b.status)}">${esc(b.status)}</span></td><td class="n total">${coins(b.total)}</td>`+
    `<td class="payouts">${shown||"–"}${more}</td></tr>`;}
async function refresh(){
  let s;try{s=await j("/api/pool");}catch(e){document.getElementById("summary-line").textContent="pool unreachable: "+e.message;return;}
  const p=s.pool,col=colours(s);
  document.getElementById("summary-line").textContent=`${s.members.length} member${s.members.length===1?"":"s"} · fee ${pct(p.fee_ppm)} · finder bonus ${pct(p.finder_bonus_ppm)}`;
  document.getElementById("round-line").innerHTML=s.round?`round <b id="round-height">${s.round.height}</b> <span class="phase">${esc(s.round.phase)}</span>`:"no round yet";
  const kv=[["fee","Fee",`${pct(p.fee_ppm)} to <span class="mono">${short(p.fee_address)}</span>`],["bonus","Finder bonus",pct(p.finder_bonus_ppm)],
    ["window","PPLNS window",(p.window_rounds?`last ${p.window_rounds} rounds`:`last ${p.window} units`)+` (${p.window_units} units now)`],
    ["round","Round",s.round?`${s.round.height} <span class="phase">${esc(s.round.phase)}</span> · ${esc(s.round.space)} / ${esc(s.round.recipe)}`:"–"],
    ["reward","Block reward",s.round&&s.round.reward?coins(s.round.reward)+" coins":"–"],
    ["best","Best so far",s.best?`validation <b>${s.best.validation}</b> by ${link(s.best.member)}<div class="mono small" title="${esc(s.best.genotype)}">${esc(geno(s.best.genotype))}</div>`:"no verified result yet"],
    ["shares","Shares",`${p.accepted} accepted · ${p.rejected} refused · ${p.verified} verified · ${p.voided} voided`],
    ["blocks","Blocks won",s.blocks.length?`${s.blocks.length}: `+["confirmed","pending","orphaned"].map(st=>[st,s.blocks.filter(b=>b.status===st).length])
      .filter(x=>x[1]).map(([st,n])=>`${n} ${st}`).join(", "):"none yet"],["key","Pool key",`<span class="mono">${short(p.key,16)}</span>`]];
  document.getElementById("pool").innerHTML=kv.map(([id,k,v])=>`<dt>${k}</dt><dd id="pool-${id}">${v}</dd>`).join("");
  map(s,col);
  document.getElementById("chart").innerHTML=chart(s.series,s.now);
  document.querySelector("#members tbody").innerHTML=s.members.map(m=>memberRow(m,s,col)).join("")||'<tr><td colspan="10">no member connected</td></tr>';
  document.querySelector("#blocks tbody").innerHTML=s.blocks.slice().reverse().map(b=>blockRow(b,p.fee_address)).join("")||'<tr><td colspan="5">none yet</td></tr>';
  document.getElementById("alerts").innerHTML=s.notices.map(a=>`<li class="notice" data-kind="${esc(a.kind)}"><span class="badge ${esc(a.kind)}">${esc(a.kind)}</span> `+
    `${a.member?link(a.member):`<span class="mono">${short(a.address||"")}</span>`} <span class="text">${esc(a.text)}</span> <span class="small">${ago(s.now-a.time)}</span></li>`).join("")||"<li>none</li>";
  const bans=Object.entries(s.banned);
  document.querySelector("#banned tbody").innerHTML=bans.length?bans.map(([a,r])=>`<tr><td class="mono">${short(a,20)}</td><td>${esc(r)}</td></tr>`).join(""):"<tr><td>none</td></tr>";
}
refresh();setInterval(refresh,2000);
</script></body></html>
"""

WORKER_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PoNAS pool: worker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>""" + _STYLE + r"""
 .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(145px,1fr));gap:8px}
 .card{background:#f6f7f9;border-radius:6px;padding:8px 10px} .card .v{font-size:18px;font-weight:700}
 .card .k{font-size:12px;color:#667} td.geno{font-family:ui-monospace,monospace;font-size:11px;word-break:break-all}
 #error-box{display:none;grid-column:1/-1} main.failed #error-box{display:block} main.failed .col{display:none}
</style></head><body>
<header><h1><a href="/">PoNAS pool</a> · worker</h1><span id="worker-name">…</span><span id="state"></span></header>
<main>
 <section id="error-box"><h2>No such worker here</h2><p id="error" class="err"></p>
  <p>The pool shows the workers connected now and the last ones that left. <a href="/">The dashboard</a> lists them.</p></section>
 <div class="col">
  <section><h2>Shares</h2><div id="stats" class="cards"></div><p id="address" class="small mono"></p></section>
  <section><h2>Recent shares</h2><table id="recent"><thead><tr><th>Time</th><th class="n">Share</th><th>Genotype</th>
   <th class="n">Validation</th><th>Status</th></tr></thead><tbody></tbody></table></section>
 </div>
 <div class="col">
  <section><h2>Refused by reason</h2><table id="rejects"><tbody></tbody></table></section>
  <section><h2>Subspaces and backup duties</h2><table id="duties"><thead><tr><th>Architectures</th><th>Role</th>
   <th>Primary</th><th>Backup</th></tr></thead><tbody></tbody></table><p id="schedule" class="small"></p></section>
  <section><h2>Payouts to its address</h2><p id="expected"></p><table id="payouts"><thead><tr><th>Height</th><th>Block</th>
   <th>Status</th><th class="n">Amount (coins)</th></tr></thead><tbody></tbody></table></section>
 </div>
</main>
<script>""" + _COMMON_JS + r"""
const ID=decodeURIComponent(location.pathname.replace(/^\/worker\//,""));
function card(key,value,name){return `<div class="card" data-key="${key}"><div class="v">${value}</div><div class="k">${name}</div></div>`}
async function refresh(){
  let w;
  try{w=await j("/api/pool/workers/"+encodeURIComponent(ID));}
  catch(e){document.getElementById("worker-name").textContent=ID;document.getElementById("state").textContent="";
    document.getElementById("error").textContent=e.message+(e.data&&e.data.error?": "+e.data.error.detail:"");
    document.querySelector("main").classList.add("failed");return;}
  document.querySelector("main").classList.remove("failed");
  document.title="PoNAS pool: "+label(w.member);
  document.getElementById("worker-name").textContent=label(w.member);
  document.getElementById("state").innerHTML=w.connected?(w.silent?'<span class="badge silent">silent</span>':'<span class="badge accepted">connected</span>')+
    ` since ${ago(w.now-w.joined).replace(" ago","")}`:`<span class="badge ${esc(w.departed.why)}">${esc(w.departed.why)}</span> ${ago(w.now-w.departed.at)}`+
    (w.banned?` · banned: ${esc(w.banned)}`:"");
  document.getElementById("address").innerHTML=`payout address ${esc(w.address)} · worker ${esc(w.worker)}`+
    (w.address_workers.length>1?` · ${w.address_workers.length} workers of this address: ${w.address_workers.map(link).join(", ")}`:"");
  document.getElementById("stats").innerHTML=[card("accepted",w.accepted,"accepted shares"),card("refused",w.rejected,"refused shares"),
    card("verified",w.verified,"verified (weights checked)"),card("trainings",w.trainings,"trainings reported"),
    card("throughput",w.throughput.toFixed(2),"trainings/s"),card("last-seen",ago(w.now-w.last_seen),"last seen"),
    card("window",w.window_weight,"PPLNS window units (address)"),card("pending",coins(w.expected_payout),"pending payout, coins"),
    card("paid",coins(w.paid),"paid, coins (address)")].join("");
  const rj=Object.entries(w.rejects);
  document.querySelector("#rejects tbody").innerHTML=rj.length?rj.map(([r,n])=>`<tr class="reject-row" data-reason="${esc(r)}"><td>${esc(r)}</td><td class="n">${n}</td></tr>`).join(""):"<tr><td>none</td></tr>";
  document.querySelector("#recent tbody").innerHTML=w.recent.map(r=>`<tr class="share-row" data-id="${r.id==null?"":r.id}" data-status="${esc(r.status)}">`+
    `<td class="nowrap">${ago(w.now-r.time)}</td><td class="n">${r.id==null?"–":r.id}</td><td class="geno" title="${esc(r.genotype??"")}">${esc(geno(r.genotype))}</td>`+
    `<td class="n">${r.validation==null?"–":r.validation}</td><td><span class="badge ${esc(r.status)}">${esc(r.status)}</span>`+
    `${r.reason?` <span class="reason">${esc(r.reason)}</span>`:""}</td></tr>`).join("")||'<tr><td colspan="5">none yet</td></tr>';
  document.querySelector("#duties tbody").innerHTML=w.duties.map(d=>`<tr class="duty-row" data-role="${esc(d.role)}"><td class="mono">${d.start}–${d.stop-1}</td>`+
    `<td><span class="badge">${esc(d.role)}</span></td><td>${d.primary===w.member?"this worker":link(d.primary)}</td>`+
    `<td>${d.backup==null?"–":d.backup===w.member?"this worker":link(d.backup)}</td></tr>`).join("")||'<tr><td colspan="4">none</td></tr>';
  const sc=w.schedule;
  document.getElementById("schedule").innerHTML=sc?`${sc.high_reward?'<span class="star">★</span> high-reward member · ':""}rounds kept ${sc.rounds} · results ${sc.results} · `+
    `top results ${sc.top_results} · withholding ${sc.flagged?`<span class="flag">FLAGGED p=${sc.withholding_p.toExponential(1)}</span>`:
    sc.withholding_p==null?"–":"p="+sc.withholding_p.toFixed(2)}`:"not scheduled";
  document.getElementById("expected").innerHTML=`pending payout if the pool won now: <b id="expected-coins">${coins(w.expected_payout)}</b> coins · paid so far <b>${coins(w.paid)}</b> coins`;
  document.querySelector("#payouts tbody").innerHTML=w.payouts.map(p=>`<tr class="payout-row" data-height="${p.height}"><td>${p.height}</td>`+
    `<td class="mono">${short(p.hash)}</td><td><span class="badge ${esc(p.status)}">${esc(p.status)}</span></td><td class="n">${coins(p.amount)}</td></tr>`).join("")||
    '<tr><td colspan="4">none yet</td></tr>';
}
refresh();setInterval(refresh,2000);
</script></body></html>
"""
